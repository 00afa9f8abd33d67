package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelctl/modelctl/client"
	"github.com/modelctl/modelctl/client/tags"
)

func init() { register(newHistoryCmd) }

func newHistoryCmd() *cobra.Command {
	var tf clientFlags
	var deployments bool
	cmd := &cobra.Command{
		Use:   "history REF",
		Short: "List every move of a tag: time, from, to, who",
		Long: `List every move of REF's tag, oldest first: when, from which digest, to which,
and by whom. modelctl's registry records them; for other registries modelctl
shows the history it keeps client-side, and says so.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := client.ParseReference(tf.expandRef(args[0]))
			if err != nil {
				return err
			}
			if deployments {
				return printDeployments(cmd, ref, tf.plainHTTP, tf.insecure, tf.json)
			}
			t, err := tf.tagger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			h, err := t.History(cmd.Context(), ref)
			if err != nil {
				return err
			}
			if tf.json {
				return xferPrintJSON(cmd.OutOrStdout(), h)
			}
			out := cmd.OutOrStdout()
			if h.Source == tags.SourceClient {
				printClientSide(out, ref.Registry, h.File)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tFROM\tTO\tUSER")
			for _, m := range h.Moves {
				user := m.User
				if user == "" {
					user = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.Time.Local().Format(time.RFC3339), short(string(m.From)), short(string(m.To)), user)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if h.Current != "" {
				fmt.Fprintf(out, "%s now points at %s\n", h.Reference, h.Current)
			} else {
				fmt.Fprintf(out, "%s does not exist now\n", h.Reference)
			}
			return nil
		},
	}
	tf.registerConn(cmd.Flags())
	cmd.Flags().BoolVar(&deployments, "deployments", false, "print which hosts run which digest of REF's repository, as sync reported it")
	return cmd
}

// short abbreviates a digest for tables: algorithm and 12 hex digits.
func short(d string) string {
	if d == "" {
		return "-"
	}
	if len(d) > 19 {
		return d[:19]
	}
	return d
}
