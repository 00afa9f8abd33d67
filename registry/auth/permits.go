package auth

// Permits reports whether the policy lets user ("" for anonymous) do every
// one of actions on repository name. It answers from the policy alone, for
// callers that authenticated the user themselves (the web UI's session).
func (a *Authenticator) Permits(user, name string, actions ...string) bool {
	return a.permits(user, requested(name, actions))
}
