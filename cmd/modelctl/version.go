package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/modelctl/modelctl/internal/version"
)

func init() { register(newVersionCmd) }

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "modelctl %s %s/%s %s\n", version.Version, runtime.GOOS, runtime.GOARCH, runtime.Version())
			return nil
		},
	}
}
