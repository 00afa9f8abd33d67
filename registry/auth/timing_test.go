package auth

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// An unknown user must take as long to refuse as some real user does. With
// a file mixing bcrypt costs (htpasswd -B defaults to 5), the dummy hash
// used to cost as much as the dearest real one, so a name answered fast was
// known to exist.
func TestUnknownUsersTimeLikeKnownOnes(t *testing.T) {
	if testing.Short() {
		t.Skip("times bcrypt checks")
	}
	var lines []string
	for i := 0; i < 9; i++ {
		l, err := hashPassword(fmt.Sprintf("cheap%d", i), "pw", 4)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, l)
	}
	l, err := hashPassword("dear", "pw", 10)
	if err != nil {
		t.Fatal(err)
	}
	lines = append(lines, l)
	h, err := ParseHtpasswd(strings.NewReader(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	check := func(user string) time.Duration {
		t0 := time.Now()
		if h.Authenticate(user, "wrong") {
			t.Fatalf("%s: wrong password accepted", user)
		}
		return time.Since(t0)
	}
	dear := check("dear")
	cheap := check("cheap0")
	slow := (dear + cheap) / 2
	if cheap >= slow {
		t.Fatalf("cost 4 took %v, cost 10 %v: cannot tell them apart here", cheap, dear)
	}
	// 90% of the real users answer fast; unknown names must too, in about
	// the same share (each name always the same way).
	fast := 0
	const n = 40
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("nobody%d", i)
		d := check(name)
		if d < slow {
			fast++
		}
		if again := check(name); (again < slow) != (d < slow) {
			t.Fatalf("%s took %v, then %v: an unknown name must cost the same each time", name, d, again)
		}
	}
	t.Logf("cost 4: %v, cost 10: %v; unknown names answered as fast as a cost-4 user: %d of %d", cheap, dear, fast, n)
	if fast < n/2 {
		t.Fatalf("%d of %d unknown names answered fast, while 9 of 10 real users do: timing tells who exists", fast, n)
	}
}

// A hash of cost 31 would make start-up (which hashes a dummy of every cost
// in the file) and every check of that user take days.
func TestHtpasswdRefusesAbsurdCosts(t *testing.T) {
	_, err := ParseHtpasswd(strings.NewReader("a:$2a$31$" + strings.Repeat("x", 53)))
	if err == nil || !strings.Contains(err.Error(), "cost 31") {
		t.Fatalf("cost 31 accepted: %v", err)
	}
}
