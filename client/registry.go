package client

import (
	"context"
	"fmt"

	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
)

func (c *Client) orasRegistry(host string) (*remote.Registry, error) {
	reg, err := remote.NewRegistry(host)
	if err != nil {
		return nil, fmt.Errorf("registry %s: %w", host, err)
	}
	reg.PlainHTTP = c.scheme(host) == "http"
	reg.Client = c.authClient(host)
	return reg, nil
}

// Repositories lists the repositories of a registry (its catalog).
func (c *Client) Repositories(ctx context.Context, host string) ([]string, error) {
	reg, err := c.orasRegistry(host)
	if err != nil {
		return nil, err
	}
	var out []string
	err = reg.Repositories(ctx, "", func(repos []string) error {
		out = append(out, repos...)
		return nil
	})
	if err != nil {
		return nil, Explain(fmt.Errorf("list repositories of %s: %w", host, err), host)
	}
	return out, nil
}

// Tags lists the tags of a repository.
func (c *Client) Tags(ctx context.Context, host, repository string) ([]string, error) {
	reg, err := c.orasRegistry(host)
	if err != nil {
		return nil, err
	}
	repo, err := reg.Repository(ctx, repository)
	if err != nil {
		return nil, fmt.Errorf("repository %s/%s: %w", host, repository, err)
	}
	var out []string
	err = repo.Tags(ctx, "", func(tags []string) error {
		out = append(out, tags...)
		return nil
	})
	if err != nil {
		return nil, Explain(fmt.Errorf("list tags of %s/%s: %w", host, repository, err), host)
	}
	return out, nil
}

// Login checks user and password against the registry and stores them as
// docker does (credential helper or the config file).
func (c *Client) Login(ctx context.Context, host, user, password string) error {
	reg, err := c.orasRegistry(host)
	if err != nil {
		return err
	}
	if err := credentials.Login(ctx, c.creds, reg, auth.Credential{Username: user, Password: password}); err != nil {
		return Explain(fmt.Errorf("login to %s: %w", host, err), host)
	}
	return nil
}

// Logout removes the stored credentials of a registry.
func (c *Client) Logout(ctx context.Context, host string) error {
	if err := credentials.Logout(ctx, c.creds, host); err != nil {
		return fmt.Errorf("logout from %s: %w", host, err)
	}
	return nil
}

// OrasRepository opens the repository repo ("host[:port]/name") as an
// oras-go remote.Repository on this client's connection (transport, TLS,
// credentials, tokens, plain-HTTP decision), for code built on oras-go
// (signing).
func (c *Client) OrasRepository(repo string) (*remote.Repository, error) {
	r, err := remote.NewRepository(repo)
	if err != nil {
		return nil, fmt.Errorf("repository %q: %w", repo, err)
	}
	r.PlainHTTP = c.scheme(r.Reference.Registry) == "http"
	r.Client = c.authClient(r.Reference.Registry)
	return r, nil
}
