package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/modelctl/modelctl/client"
)

func init() { register(newLsCmd) }

func newLsCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "ls REGISTRY[/REPO]",
		Short: "List the repositories of a registry, or the tags of a repository",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			host, repo, err := client.ParseRegistry(args[0])
			if err != nil {
				return err
			}
			c, err := cf.client(nil)
			if err != nil {
				return err
			}
			var names []string
			if repo == "" {
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
