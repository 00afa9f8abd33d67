package registry

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelctl/modelctl/registry/storage"
)

// metrics is a small Prometheus text-format exposition: request counts by
// method and status, a latency histogram by method, bytes in and out, and
// uploads in progress.
type metrics struct {
	mu        sync.Mutex
	requests  map[[2]string]uint64 // method, code
	latencies map[string]*histogram

	bytesIn           atomic.Uint64
	bytesOut          atomic.Uint64
	uploadsInProgress atomic.Int64
	blobsUploaded     atomic.Uint64
}

var latencyBuckets = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300}

type histogram struct {
	counts []uint64
	sum    float64
	count  uint64
}

func newMetrics() *metrics {
	return &metrics{requests: map[[2]string]uint64{}, latencies: map[string]*histogram{}}
}

func (m *metrics) observe(method string, status int, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests[[2]string{method, fmt.Sprint(status)}]++
	h := m.latencies[method]
	if h == nil {
		h = &histogram{counts: make([]uint64, len(latencyBuckets))}
		m.latencies[method] = h
	}
	s := d.Seconds()
	for i, b := range latencyBuckets {
		if s <= b {
			h.counts[i]++
		}
	}
	h.sum += s
	h.count++
}

func (m *metrics) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	var b strings.Builder
	m.mu.Lock()
	b.WriteString("# HELP modelctl_http_requests_total HTTP requests by method and status code.\n# TYPE modelctl_http_requests_total counter\n")
	keys := make([][2]string, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i][0]+keys[i][1] < keys[j][0]+keys[j][1] })
	for _, k := range keys {
		fmt.Fprintf(&b, "modelctl_http_requests_total{method=%q,code=%q} %d\n", k[0], k[1], m.requests[k])
	}
	b.WriteString("# HELP modelctl_http_request_duration_seconds HTTP request latency by method.\n# TYPE modelctl_http_request_duration_seconds histogram\n")
	methods := make([]string, 0, len(m.latencies))
	for k := range m.latencies {
		methods = append(methods, k)
	}
	sort.Strings(methods)
	for _, meth := range methods {
		h := m.latencies[meth]
		for i, le := range latencyBuckets {
			fmt.Fprintf(&b, "modelctl_http_request_duration_seconds_bucket{method=%q,le=\"%g\"} %d\n", meth, le, h.counts[i])
		}
		fmt.Fprintf(&b, "modelctl_http_request_duration_seconds_bucket{method=%q,le=\"+Inf\"} %d\n", meth, h.count)
		fmt.Fprintf(&b, "modelctl_http_request_duration_seconds_sum{method=%q} %g\n", meth, h.sum)
		fmt.Fprintf(&b, "modelctl_http_request_duration_seconds_count{method=%q} %d\n", meth, h.count)
	}
	m.mu.Unlock()
	fmt.Fprintf(&b, "# HELP modelctl_http_received_bytes_total Request body bytes received.\n# TYPE modelctl_http_received_bytes_total counter\nmodelctl_http_received_bytes_total %d\n", m.bytesIn.Load())
	fmt.Fprintf(&b, "# HELP modelctl_http_sent_bytes_total Response body bytes sent.\n# TYPE modelctl_http_sent_bytes_total counter\nmodelctl_http_sent_bytes_total %d\n", m.bytesOut.Load())
	fmt.Fprintf(&b, "# HELP modelctl_uploads_in_progress Blob upload requests being received.\n# TYPE modelctl_uploads_in_progress gauge\nmodelctl_uploads_in_progress %d\n", m.uploadsInProgress.Load())
	fmt.Fprintf(&b, "# HELP modelctl_blobs_uploaded_total Blob uploads completed.\n# TYPE modelctl_blobs_uploaded_total counter\nmodelctl_blobs_uploaded_total %d\n", m.blobsUploaded.Load())
	// The upload buffer budget (storage.LargeBuffers): bodies that flow
	// take large buffers from it while they last, the others read in
	// small chunks. Buffers in use near the budget all the time means the
	// budget, not the disk or the network, paces uploads.
	lb := storage.LargeBuffers
	fmt.Fprintf(&b, "# HELP modelctl_upload_buffers_budget Large upload copy buffers the server may hold.\n# TYPE modelctl_upload_buffers_budget gauge\nmodelctl_upload_buffers_budget %d\n", lb.Cap())
	fmt.Fprintf(&b, "# HELP modelctl_upload_buffer_size_bytes The size of one large upload copy buffer.\n# TYPE modelctl_upload_buffer_size_bytes gauge\nmodelctl_upload_buffer_size_bytes %d\n", lb.Size())
	fmt.Fprintf(&b, "# HELP modelctl_upload_buffers_in_use Large upload copy buffers in use.\n# TYPE modelctl_upload_buffers_in_use gauge\nmodelctl_upload_buffers_in_use %d\n", lb.InUse())
	fmt.Fprintf(&b, "# HELP modelctl_upload_buffers_max_in_use The most large upload copy buffers in use at once since the server started.\n# TYPE modelctl_upload_buffers_max_in_use gauge\nmodelctl_upload_buffers_max_in_use %d\n", lb.HighWater())
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = io.WriteString(w, b.String())
}

// responseRecorder records the status and body size of a response. It
// passes ReadFrom through so that blob downloads keep using sendfile.
type responseRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *responseRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *responseRecorder) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.(io.ReaderFrom).ReadFrom(r)
	w.bytes += n
	return n, err
}

func (w *responseRecorder) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *responseRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// countingBody counts request body bytes as the handler reads them.
type countingBody struct {
	io.ReadCloser
	n *atomic.Uint64
}

func (c countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(uint64(n))
	return n, err
}
