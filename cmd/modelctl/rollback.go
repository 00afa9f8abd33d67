package main

import (
	"fmt"

	digest "github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/modelctl/modelctl/client"
	"github.com/modelctl/modelctl/client/tags"
)

func init() { register(newRollbackCmd) }

func newRollbackCmd() *cobra.Command {
	var tf clientFlags
	var to string
	cmd := &cobra.Command{
		Use:   "rollback REF [--to DIGEST]",
		Short: "Move a tag back to its previous digest (from the tag history)",
		Long: `Move REF's tag back to the digest it pointed at before, from the tag's history
(rolling back twice after v1, v2, v3 reaches v1), or to --to DIGEST. On
modelctl's registry the move is a compare-and-swap: it fails if the tag moved
meanwhile. A following "modelctl sync CONFIG --update" installs it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := client.ParseReference(args[0])
			if err != nil {
				return err
			}
			t, err := tf.tagger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			res, err := t.Rollback(cmd.Context(), ref, digest.Digest(to))
			if err != nil {
				return err
			}
			if tf.json {
				return xferPrintJSON(cmd.OutOrStdout(), res)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "rolled back %s: %s -> %s\n", res.Reference, res.From, res.To)
			if res.History == tags.SourceClient {
				printClientSide(out, ref.Registry, res.HistoryFile)
			}
			fmt.Fprintln(out, "run `modelctl sync CONFIG --update` where the model is pinned to install it")
			return nil
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "digest to move the tag to (default: the previous one in its history)")
	tf.registerConn(cmd.Flags())
	return cmd
}
