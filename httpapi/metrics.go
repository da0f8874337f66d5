package httpapi

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics live on prometheus.DefaultRegisterer, beside the mount's, so one
// /metrics shows both. Labels are bounded: route and method are ours
// (unknown methods count as "other"), never a path or a task id.
var (
	requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mpcfs", Subsystem: "http", Name: "requests_total",
		Help: "HTTP requests answered, by route (api, origin, metrics, healthz, other), method and status code.",
	}, []string{"route", "method", "code"})
	requestSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "mpcfs", Subsystem: "http", Name: "request_duration_seconds",
		Help:    "Time from a request's arrival to the end of its response, by route.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"route"})
	responseBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mpcfs", Subsystem: "http", Name: "response_bytes_total",
		Help: "Response body bytes sent, by route.",
	}, []string{"route"})
	authFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mpcfs", Subsystem: "api", Name: "auth_failures_total",
		Help: "API requests refused by authentication, by reason (missing, malformed, date, payload, signature, project, throttled).",
	}, []string{"reason"})
	tasksCreated = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "mpcfs", Subsystem: "api", Name: "tasks_created_total",
		Help: "Tasks created through the HTTP API.",
	})
	originQueued = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "mpcfs", Subsystem: "origin", Name: "queued_total",
		Help: "Segment responses that waited for a turn (Tuning.OriginStreams were streaming).",
	})
	originUnqueued = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "mpcfs", Subsystem: "origin", Name: "queue_timeouts_total",
		Help: "Segment responses streamed without a turn after waiting Tuning.OriginQueueWait.",
	})
)

var registerOnce sync.Once

func registerMetrics() {
	registerOnce.Do(func() {
		prometheus.MustRegister(requestsTotal, requestSeconds, responseBytes, authFailures, tasksCreated, originQueued, originUnqueued)
	})
}

func observe(route, method string, code int, bytes int64, d time.Duration) {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodDelete, http.MethodOptions:
	default:
		method = "other"
	}
	requestsTotal.WithLabelValues(route, method, strconv.Itoa(code)).Inc()
	requestSeconds.WithLabelValues(route).Observe(d.Seconds())
	responseBytes.WithLabelValues(route).Add(float64(bytes))
}

var metricsHandler = promhttp.Handler()

func serveMetrics(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, "GET, HEAD")
		return
	}
	metricsHandler.ServeHTTP(w, r)
}
