package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/modelctl/modelctl/client"
	"github.com/modelctl/modelctl/client/tags"
)

func init() { register(newTagCmd) }

// printClientSide says where a history is kept when the registry keeps none.
func printClientSide(w io.Writer, registry, file string) {
	fmt.Fprintf(w, "note: %s keeps no tag history; modelctl keeps it client-side in %s (moves made from other machines are seen only when they are looked at)\n", registry, file)
}

func newTagCmd() *cobra.Command {
	var tf clientFlags
	cmd := &cobra.Command{
		Use:   "tag REF NEWTAG",
		Short: "Point NEWTAG (in REF's repository) at what REF names",
		Long: `Point NEWTAG at the manifest REF names (a tag or a digest), in the same
repository. modelctl's registry records the move in the tag's history (time,
from, to, who); against other registries the history is kept client-side, under
the user's config directory, and the output says so.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := client.ParseReference(tf.expandRef(args[0]))
			if err != nil {
				return err
			}
			t, err := tf.tagger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			res, err := t.Tag(cmd.Context(), ref, args[1])
			if err != nil {
				return err
			}
			if tf.json {
				return xferPrintJSON(cmd.OutOrStdout(), res)
			}
			out := cmd.OutOrStdout()
			if res.From != "" && res.From != res.To {
				fmt.Fprintf(out, "tagged %s -> %s (was %s)\n", res.Reference, res.To, res.From)
			} else {
				fmt.Fprintf(out, "tagged %s -> %s\n", res.Reference, res.To)
			}
			if res.History == tags.SourceClient {
				printClientSide(out, ref.Registry, res.HistoryFile)
			}
			return nil
		},
	}
	tf.registerConn(cmd.Flags())
	return cmd
}
