package manifests

// Model format facts: what modelctl reads from a model file's own header at
// push time (package modelfile) and records as manifest annotations, so that
// inspect shows them without pulling a byte of weights. All keys are under
// AnnotationModelPrefix; which ones a manifest has depends on the format.
const (
	AnnotationModelPrefix = AnnotationPrefix + "model."

	// AnnotationFormat is the format the pushed path was read as: onnx,
	// gguf, safetensors, directory or raw.
	AnnotationFormat = AnnotationModelPrefix + "format"
	// AnnotationWeightsFormat is, for a directory, the format of the main
	// weights inside it (the largest model file or set).
	AnnotationWeightsFormat = AnnotationModelPrefix + "weights.format"
	// AnnotationArchitecture is the model architecture (GGUF
	// general.architecture, or a directory's config.json architectures).
	AnnotationArchitecture = AnnotationModelPrefix + "architecture"
	// AnnotationName is the model's own name (GGUF general.name).
	AnnotationName = AnnotationModelPrefix + "name"
	// AnnotationParameters is the parameter count: the sum of the element
	// counts of every tensor, in decimal.
	AnnotationParameters = AnnotationModelPrefix + "parameters"
	// AnnotationContextLength is the context length in tokens (GGUF
	// <arch>.context_length, or config.json max_position_embeddings).
	AnnotationContextLength = AnnotationModelPrefix + "context_length"
	// AnnotationFiles is the number of files of the artifact's model.
	AnnotationFiles = AnnotationModelPrefix + "files"
	// AnnotationEntry is the relative path of the file an application
	// points at (the .gguf, the safetensors index, the .onnx); absent for a
	// directory, where the application points at the directory itself.
	AnnotationEntry = AnnotationModelPrefix + "entry"

	// AnnotationGGUFVersion is the GGUF format version (2 or 3).
	AnnotationGGUFVersion = AnnotationModelPrefix + "gguf.version"
	// AnnotationGGUFFileType is general.file_type by llama.cpp's name
	// (Q4_K_M, Q8_0, F16, ...): the quantization type.
	AnnotationGGUFFileType = AnnotationModelPrefix + "gguf.file_type"
	// AnnotationGGUFTensorTypes is the tensor type histogram, most
	// frequent first: "Q4_K=193,F32=65,Q6_K=33".
	AnnotationGGUFTensorTypes = AnnotationModelPrefix + "gguf.tensor_types"
	// AnnotationGGUFTensors is the number of tensors.
	AnnotationGGUFTensors = AnnotationModelPrefix + "gguf.tensors"

	// AnnotationSafetensorsTensors is the number of tensors over all shards.
	AnnotationSafetensorsTensors = AnnotationModelPrefix + "safetensors.tensors"
	// AnnotationSafetensorsDTypes is the dtype histogram, most frequent
	// first: "BF16=290,F32=2".
	AnnotationSafetensorsDTypes = AnnotationModelPrefix + "safetensors.dtypes"
	// AnnotationSafetensorsShards is the number of shard files (1 for an
	// unsharded file).
	AnnotationSafetensorsShards = AnnotationModelPrefix + "safetensors.shards"
)

// ModelFacts returns the format annotations of a manifest with
// AnnotationModelPrefix removed ("format" -> "gguf").
func ModelFacts(annotations map[string]string) map[string]string {
	return underPrefix(annotations, AnnotationModelPrefix)
}
