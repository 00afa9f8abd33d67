package s3

import (
	"net/http"
)

// MaxRequests bounds the driver's S3 requests in flight (from sending the
// request to the response's headers; a GET's body then streams without a
// slot). Every request can cost a connection with its buffers and two
// goroutines: 800 upload bodies cut off at once by the body deadline each
// store a segment and a state, and 800 connections opened at once cost
// the server about 80 MiB (the load test with MODELCTL_LOAD_SLOW=800). A
// request's body is always in memory or in a spool file here, never a
// client's stream, so a slot is never held waiting for a client.
const MaxRequests = 128

// limitedTransport lets at most cap(slots) requests through at once.
type limitedTransport struct {
	rt    http.RoundTripper
	slots chan struct{}
}

func (t *limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	select {
	case t.slots <- struct{}{}:
	case <-req.Context().Done():
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, req.Context().Err()
	}
	defer func() { <-t.slots }()
	return t.rt.RoundTrip(req)
}
