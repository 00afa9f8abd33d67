package auth

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
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
	// Which cost an unknown name is refused at is decided by its dummy
	// hash: 90% of the real users have cost 4, so about 90% of unknown
	// names must get a cost-4 dummy, each name always the same one.
	var fastNames, slowNames []string
	const n = 400
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("nobody%d", i)
		c, err := bcrypt.Cost(h.dummyFor(name))
		if err != nil {
			t.Fatal(err)
		}
		if again, _ := bcrypt.Cost(h.dummyFor(name)); again != c {
			t.Fatalf("%s: dummy of cost %d, then %d: an unknown name must cost the same each time", name, c, again)
		}
		switch c {
		case 4:
			fastNames = append(fastNames, name)
		case 10:
			slowNames = append(slowNames, name)
		default:
			t.Fatalf("%s: dummy of cost %d, which no user has", name, c)
		}
	}
	t.Logf("unknown names refused at cost 4: %d of %d", len(fastNames), n)
	if len(fastNames) < n*75/100 || len(slowNames) == 0 {
		t.Fatalf("%d of %d unknown names get a cost-4 dummy, while 9 of 10 real users have cost 4: timing tells who exists", len(fastNames), n)
	}
	// And the refusal really runs that check: the least time of a few
	// refusals of a cost-10 unknown name is near a cost-10 user's (load
	// only ever adds time, so minima are what can be compared here).
	dear, unknown := time.Duration(1<<62), time.Duration(1<<62)
	for i := 0; i < 3; i++ { // interleaved, so that a burst of load hits both
		dear = min(dear, check("dear"))
		unknown = min(unknown, check(slowNames[0]))
	}
	t.Logf("least of 3: cost-10 user %v, unknown name with a cost-10 dummy %v", dear, unknown)
	if unknown < dear/3 {
		t.Fatalf("an unknown name with a cost-10 dummy was refused in %v, a cost-10 user in %v: the dummy is not checked", unknown, dear)
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
