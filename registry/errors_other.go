//go:build !unix

package registry

func isQuotaError(error) bool { return false }
