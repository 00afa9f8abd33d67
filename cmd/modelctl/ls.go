package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/modelctl/modelctl/client"
)

func init() { register(newLsCmd) }

func newLsCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "ls REGISTRY[/REPO] | s3://BUCKET/PREFIX[/REPO]",
		Short: "List the repositories of a registry or bucket, or the tags of a repository",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client(nil)
			if err != nil {
				return err
			}
			var names []string
			host, repo := "", ""
			if strings.HasPrefix(args[0], "s3://") {
				names, err = c.ListS3(cmd.Context(), args[0])
			} else if host, repo, err = client.ParseRegistry(args[0]); err != nil {
				return err
			} else if repo == "" {
				names, err = c.Repositories(cmd.Context(), host)
			} else {
				names, err = c.Tags(cmd.Context(), host, repo)
			}
			if err != nil {
				return err
			}
			if names == nil {
				names = []string{}
			}
			if cf.json {
				return xferPrintJSON(cmd.OutOrStdout(), names)
			}
			for _, n := range names {
				fmt.Fprintln(cmd.OutOrStdout(), n)
			}
			return nil
		},
	}
	cf.register(cmd.Flags())
	return cmd
}
