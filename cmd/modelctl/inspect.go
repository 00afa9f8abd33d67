package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/modelctl/modelctl/client"
	"github.com/modelctl/modelctl/manifests"
	"github.com/modelctl/modelctl/modelfile"
)

func init() { register(newInspectCmd) }

func newInspectCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "inspect REF",
		Short: "Show an artifact's manifest, config, files and benchmark",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := client.ParseReference(cf.expandRef(args[0]))
			if err != nil {
				return err
			}
			c, err := cf.client(nil)
			if err != nil {
				return err
			}
			art, err := c.Resolve(cmd.Context(), ref)
			if err != nil {
				return err
			}
			if cf.json {
				return xferPrintJSON(cmd.OutOrStdout(), struct {
					Reference string            `json:"reference"`
					Digest    string            `json:"digest"`
					Manifest  json.RawMessage   `json:"manifest"`
					Config    json.RawMessage   `json:"config"`
					Files     []manifests.File  `json:"files"`
					Benchmark map[string]string `json:"benchmark"`
					// Quantization holds the quantizer's settings; RequiresCPU
					// the CPUs that compute the model right ("" for any).
					Quantization map[string]string `json:"quantization"`
					RequiresCPU  string            `json:"requires_cpu"`
					Annotations  map[string]string `json:"annotations"`
					// Kind is modelpack, modelkit or files; Layers say what
					// a pull does with each layer; Kitfile is a ModelKit's.
					Kind    manifests.ArtifactKind `json:"kind"`
					Layers  []manifests.LayerPlan  `json:"layers"`
					Kitfile json.RawMessage        `json:"kitfile,omitempty"`
					Model   []modelfile.Line       `json:"model,omitempty"`
				}{ref.String(), art.Digest.String(), art.Raw, art.RawConfig, art.Manifest.Files, manifests.Benchmark(art.Manifest.Annotations),
					manifests.QuantizationAnnotations(art.Manifest.Annotations), art.Manifest.Annotations[manifests.AnnotationRequiresCPU], art.Manifest.Annotations,
					art.Class.Kind, art.Class.Layers, kitfileJSON(art.Class.Kitfile), modelfile.Describe(art.Manifest.Annotations)})
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Reference:    %s\nDigest:       %s\nArtifactType: %s\nKind:         %s\n", ref, art.Digest, orNone(art.Manifest.ArtifactType), describeKind(art))
			if cfg := art.Config; cfg != nil {
				fmt.Fprintf(out, "Name:         %s\nFormat:       %s\nPrecision:    %s\nQuantization: %s\n", cfg.Descriptor.Name, cfg.Config.Format, cfg.Config.Precision, cfg.Config.Quantization)
				if cfg.Descriptor.CreatedAt != nil {
					fmt.Fprintf(out, "Created:      %s\n", cfg.Descriptor.CreatedAt.Format("2006-01-02T15:04:05Z07:00"))
				}
			}
			if req := art.Manifest.Annotations[manifests.AnnotationRequiresCPU]; req != "" {
				fmt.Fprintf(out, "Requires:     a CPU that is %s (full-range int8: wrong results without VNNI on x86-64)\n", manifests.DescribeCPURequirement(req))
			} else {
				fmt.Fprintf(out, "Requires:     any CPU\n")
			}
			if art.Manifest.Annotations[manifests.AnnotationGatesOverridden] == "true" {
				fmt.Fprintf(out, "Gates:        FAILED, pushed with --allow-failed-gates\n")
			}
			if facts := modelfile.Describe(art.Manifest.Annotations); len(facts) > 0 {
				fmt.Fprintln(out, "Model:")
				for _, f := range facts {
					fmt.Fprintf(out, "  %-15s %s\n", f.Label+":", f.Value)
				}
			}
			var total int64
			fmt.Fprintln(out, "Files:")
			for _, f := range art.Manifest.Files {
				total += f.Size
				fmt.Fprintf(out, "  %12d  %s  %s\n", f.Size, f.Digest, f.Path)
			}
			for _, l := range art.Class.Layers {
				if l.IsArchive() {
					total += l.Descriptor.Size
					fmt.Fprintf(out, "  %12d  %s  (%s archive, unpacked on pull)\n", l.Descriptor.Size, l.Descriptor.Digest, l.Descriptor.MediaType)
				}
			}
			fmt.Fprintf(out, "  %12d  total\n", total)
			if len(art.Class.Kitfile) > 0 {
				fmt.Fprintf(out, "Kitfile:\n%s\n", indent(string(art.Class.Kitfile), "  "))
			}
			printAnnotations := func(title string, m map[string]string) {
				if len(m) == 0 {
					return
				}
				keys := make([]string, 0, len(m))
				for k := range m {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				fmt.Fprintln(out, title)
				for _, k := range keys {
					fmt.Fprintf(out, "  %s = %s\n", k, m[k])
				}
			}
			printAnnotations("Quantization settings:", manifests.QuantizationAnnotations(art.Manifest.Annotations))
			printAnnotations("Benchmark:", manifests.Benchmark(art.Manifest.Annotations))
			other := map[string]string{}
			for k, v := range art.Manifest.Annotations {
				if !strings.HasPrefix(k, manifests.AnnotationBenchPrefix) && !strings.HasPrefix(k, manifests.AnnotationQuantizationPrefix) {
					other[k] = v
				}
			}
			printAnnotations("Annotations:", other)
			return nil
		},
	}
	cf.register(cmd.Flags())
	return cmd
}

func describeKind(art *client.Artifact) string {
	switch art.Class.Kind {
	case manifests.KindModelKit:
		return "KitOps ModelKit"
	case manifests.KindFiles:
		return "an artifact of files (no model config)"
	}
	if art.Class.Native {
		return "ModelPack model"
	}
	return "ModelPack model (archive layers)"
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func indent(s, by string) string {
	return by + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+by)
}

// kitfileJSON is the Kitfile as JSON for --json (a Kitfile in YAML is
// given as a JSON string).
func kitfileJSON(b []byte) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	if json.Valid(b) {
		return b
	}
	q, _ := json.Marshal(string(b))
	return q
}
