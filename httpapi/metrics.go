package httpapi

import (
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/dwebkit/dweb/core"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// httpMetrics count the API's requests (docs/http-api.md, "Metrics"):
//
//	dweb_http_requests_total{route,code}         requests answered, by route pattern and status
//	dweb_http_errors_total{route,code}           of those, the ones answered with status >= 400
//	dweb_http_request_duration_seconds{route}    time to the end of the answer (histogram)
//	dweb_http_requests_in_flight                 requests being served (gauge)
//
// route is the mux pattern ("GET /api/groups/{group}"), or "none" for a
// request no route matches, so label values stay bounded.
type httpMetrics struct {
	requests *prometheus.CounterVec
	errors   *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge
}

func newHTTPMetrics() *httpMetrics {
	return &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dweb_http_requests_total", Help: "HTTP API requests answered, by route and status code.",
		}, []string{"route", "code"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dweb_http_errors_total", Help: "HTTP API requests answered with a status >= 400, by route and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dweb_http_request_duration_seconds",
			Help:    "Time to answer an HTTP API request, by route.",
			Buckets: []float64{.001, .005, .025, .1, .5, 2.5, 10, 60, 300},
		}, []string{"route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dweb_http_requests_in_flight", Help: "HTTP API requests being served.",
		}),
	}
}

func (m *httpMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.errors, m.duration, m.inFlight}
}

func (m *httpMetrics) observe(route string, code int, d time.Duration) {
	c := strconv.Itoa(code)
	m.requests.WithLabelValues(route, c).Inc()
	if code >= 400 {
		m.errors.WithLabelValues(route, c).Inc()
	}
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}

// NewRegistry returns the daemon's Prometheus registry: the Go runtime and
// process collectors, dweb_groups and dweb_peers read from b at scrape
// time, and extra (e.g. the DHT's dht.Metrics). The HTTP API adds its own
// collectors to it.
func NewRegistry(b interface{ Groups() []core.GroupInfo }, peers func() int, extra ...prometheus.Collector) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "dweb_groups", Help: "Groups this node belongs to.",
	}, func() float64 { return float64(len(b.Groups())) }))
	if peers != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "dweb_peers", Help: "Nodes in this node's DHT routing table.",
		}, func() float64 { return float64(peers()) }))
	}
	reg.MustRegister(extra...)
	return reg
}

// metricsHandler serves reg in the Prometheus text format.
func metricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// statusWriter records the status a handler answers with. It keeps the
// writer's optional powers: Flush and the http.ResponseController through
// Unwrap, and ReadFrom, so a file answer still goes out with sendfile.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(w.ResponseWriter, r)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
