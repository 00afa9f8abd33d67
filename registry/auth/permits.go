package auth

// Permits reports whether the policy lets user ("" for anonymous) do every
// one of actions on repository name. It answers from the policy, for
// callers that authenticated the user themselves (the web UI's session); a
// user no longer in the htpasswd file gets what anonymous users get.
func (a *Authenticator) Permits(user, name string, actions ...string) bool {
	if user != "" && !a.KnowsUser(user) {
		user = ""
	}
	return a.permits(user, requested(name, actions))
}

// KnowsUser reports whether user is in the htpasswd file the server runs
// with: a session signed for a user removed since (sessions outlive a
// restart when the token key is shared) is no longer one.
func (a *Authenticator) KnowsUser(user string) bool { return a.cfg.Users.Has(user) }
