package main

import (
	"bufio"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/modelctl/modelctl/client"
)

func init() {
	register(newLoginCmd)
	register(newLogoutCmd)
}

func newLoginCmd() *cobra.Command {
	var cf clientFlags
	var user string
	var passwordStdin bool
	cmd := &cobra.Command{
		Use:   "login REGISTRY -u USER --password-stdin",
		Short: "Store credentials for a registry (Docker config file or credential helper)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			host, repo, err := client.ParseRegistry(args[0])
			if err != nil {
				return err
			}
			if repo != "" {
				return fmt.Errorf("login: %q: give the registry (host[:port]) only", args[0])
			}
			if user == "" || !passwordStdin {
				return fmt.Errorf("login: -u USER and --password-stdin are required (the password is never a flag, so it stays out of shell history)")
			}
			line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
			if err != nil && line == "" {
				return fmt.Errorf("login: read the password from stdin: %w", err)
			}
			password := strings.TrimRight(line, "\r\n")
			if password == "" {
				return fmt.Errorf("login: empty password on stdin")
			}
			c, err := cf.client(nil)
			if err != nil {
				return err
			}
			if err := c.Login(cmd.Context(), host, user, password); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "logged in to %s as %s\n", host, user)
			return nil
		},
	}
	cmd.Flags().StringVarP(&user, "username", "u", "", "user name")
	cmd.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from stdin")
	cf.register(cmd.Flags())
	return cmd
}

func newLogoutCmd() *cobra.Command {
	var cf clientFlags
	return &cobra.Command{
		Use:   "logout REGISTRY",
		Short: "Remove the stored credentials of a registry",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			host, _, err := client.ParseRegistry(args[0])
			if err != nil {
				return err
			}
			c, err := cf.client(nil)
			if err != nil {
				return err
			}
			if err := c.Logout(cmd.Context(), host); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "logged out of %s\n", host)
			return nil
		},
	}
}
