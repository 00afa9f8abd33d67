package main

import (
	"github.com/spf13/cobra"
)

// commands holds the constructors of the subcommands; each command's file
// registers itself in init, so adding a command touches one file.
var commands []func() *cobra.Command

func register(c func() *cobra.Command) { commands = append(commands, c) }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "modelctl",
		Short:         "A content-addressed registry for ML model artifacts",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	for _, c := range commands {
		root.AddCommand(c())
	}
	return root
}
