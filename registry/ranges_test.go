package registry

import "testing"

func TestParseRange(t *testing.T) {
	const size = 1000
	tests := []struct {
		h               string
		off, n          int64
		ok, satisfiable bool
	}{
		{"bytes=0-99", 0, 100, true, true},
		{"bytes=500-", 500, 500, true, true},
		{"bytes=900-5000", 900, 100, true, true},
		{"bytes=-100", 900, 100, true, true},
		{"bytes=-5000", 0, 1000, true, true},
		{"bytes=999-999", 999, 1, true, true},
		{"bytes=1000-", 0, 0, true, false},
		{"bytes=500-0", 0, 0, true, false},
		{"bytes=-0", 0, 0, true, false},
		{"bytes=0-1,5-6", 0, 0, false, true},
		{"items=0-1", 0, 0, false, true},
		{"bytes=x-1", 0, 0, false, true},
		{"bytes=-1-2", 0, 0, false, true},
		{"bytes=1", 0, 0, false, true},
	}
	for _, tc := range tests {
		off, n, ok, sat := parseRange(tc.h, size)
		if ok != tc.ok || sat != tc.satisfiable || (ok && sat && (off != tc.off || n != tc.n)) {
			t.Errorf("parseRange(%q) = %d, %d, %v, %v; want %d, %d, %v, %v", tc.h, off, n, ok, sat, tc.off, tc.n, tc.ok, tc.satisfiable)
		}
	}
}

func TestParseContentRange(t *testing.T) {
	tests := []struct {
		h          string
		start, end int64
		bad        bool
	}{
		{"0-99", 0, 99, false},
		{"100-199", 100, 199, false},
		{"bytes 100-199/*", 100, 199, false},
		{"bytes=5-5", 5, 5, false},
		{"5-4", 0, 0, true},
		{"-1-5", 0, 0, true},
		{"a-b", 0, 0, true},
		{"99", 0, 0, true},
		{"", 0, 0, true},
		{"9223372036854775807-9223372036854775808", 0, 0, true},
	}
	for _, tc := range tests {
		s, e, err := parseContentRange(tc.h)
		if (err != nil) != tc.bad || (!tc.bad && (s != tc.start || e != tc.end)) {
			t.Errorf("parseContentRange(%q) = %d, %d, %v", tc.h, s, e, err)
		}
	}
}
