package registry

import (
	"errors"
	"strconv"
	"strings"
)

var errBadRange = errors.New("malformed range")

// parseContentRange parses the Content-Range of an upload chunk: the spec's
// "<start>-<end>" (inclusive), also accepted as "bytes <start>-<end>[/<size>]".
func parseContentRange(s string) (start, end int64, err error) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "bytes ")
	s = strings.TrimPrefix(s, "bytes=")
	if i := strings.IndexByte(s, '/'); i >= 0 {
		s = s[:i]
	}
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, errBadRange
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start {
		return 0, 0, errBadRange
	}
	return start, end, nil
}

// parseRange parses a single-range "bytes=" Range header against a blob of
// size bytes, returning the offset and length to send. ok is false for a
// header this server does not honour (several ranges, unknown units): the
// caller then sends the whole blob, as RFC 9110 allows. satisfiable is false
// when the range lies outside the blob (a 416).
func parseRange(h string, size int64) (offset, length int64, ok, satisfiable bool) {
	spec, found := strings.CutPrefix(strings.TrimSpace(h), "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, 0, false, true
	}
	a, b, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, 0, false, true
	}
	if a == "" {
		// Suffix range: the last n bytes.
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n < 0 {
			return 0, 0, false, true
		}
		if n > size {
			n = size
		}
		if n == 0 {
			// Also a suffix of an empty blob: RFC 9110 makes it
			// unsatisfiable, and a 206 would need "bytes 0--1/0".
			return 0, 0, true, false
		}
		return size - n, n, true, true
	}
	start, err := strconv.ParseInt(a, 10, 64)
	if err != nil || start < 0 {
		return 0, 0, false, true
	}
	if start >= size {
		return 0, 0, true, false
	}
	end := size - 1
	if b != "" {
		e, err := strconv.ParseInt(b, 10, 64)
		if err != nil {
			return 0, 0, false, true
		}
		if e < start {
			// An invalid range-spec: RFC 9110 asks for a 416.
			return 0, 0, true, false
		}
		if e < end {
			end = e
		}
	}
	return start, end - start + 1, true, true
}
