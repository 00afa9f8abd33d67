package modelfile

import (
	"path"
	"strings"

	"github.com/modelctl/modelctl/manifests"
)

// Kind is what a file of a model is, as ModelPack names it.
type Kind string

// Kinds of ModelPack layers.
const (
	KindWeight       Kind = "weight"
	KindWeightConfig Kind = "weight.config"
	KindDoc          Kind = "doc"
	KindCode         Kind = "code"
	KindDataset      Kind = "dataset"
)

// MediaType is the raw ModelPack layer media type of the kind.
func (k Kind) MediaType() string {
	switch k {
	case KindWeightConfig:
		return manifests.MediaTypeWeightConfigRaw
	case KindDoc:
		return manifests.MediaTypeDocRaw
	case KindCode:
		return manifests.MediaTypeCodeRaw
	case KindDataset:
		return manifests.MediaTypeDatasetRaw
	}
	return manifests.MediaTypeWeightRaw
}

// KindOf chooses a file's kind by its name: configuration and tokenizer
// files are weight.config, README/licence/notices and other prose are doc,
// Python is code, and everything else (weights, graphs, data) is weight.
func KindOf(relPath string) Kind {
	base := strings.ToLower(path.Base(relPath))
	ext := path.Ext(base)
	stem := strings.TrimSuffix(base, ext)
	switch {
	case strings.HasSuffix(base, ".index.json"),
		strings.Contains(stem, "config") && (ext == ".json" || ext == ".yaml" || ext == ".yml"),
		strings.HasPrefix(base, "tokenizer"),
		strings.HasPrefix(base, "vocab."), strings.HasPrefix(base, "merges."),
		strings.HasPrefix(base, "chat_template."),
		base == "special_tokens_map.json", base == "added_tokens.json", base == "params.json",
		base == "spiece.model", base == "sentencepiece.bpe.model",
		ext == ".tiktoken":
		return KindWeightConfig
	case ext == ".py", ext == ".ipynb":
		return KindCode
	case ext == ".md", ext == ".rst", ext == ".txt",
		strings.HasPrefix(base, "readme"), strings.HasPrefix(base, "license"),
		strings.HasPrefix(base, "licence"), strings.HasPrefix(base, "notice"),
		strings.HasPrefix(base, "copying"), strings.HasPrefix(base, "citation"),
		strings.HasPrefix(base, "use_policy"):
		return KindDoc
	}
	return KindWeight
}
