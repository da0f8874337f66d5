// Package metrics holds every Prometheus metric of mpcfs, registered on
// prometheus.DefaultRegisterer (so any handler serving the default registry
// shows them: `mpcfs mount --metrics-addr`, or an HTTP API in the same
// process). Label values are fixed words, never names, paths or keys.
package metrics

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/mpcfs/mpcfs/crypto"
	"github.com/mpcfs/mpcfs/store"
)

// Kinds of files served, the "kind" label.
const (
	KindSegment  = "segment"  // an encrypted output segment
	KindPlaylist = "playlist" // a rewritten output playlist
	KindObject   = "object"   // a store object read as it is
)

var (
	// BytesServed counts bytes returned by read(2), by kind of file.
	BytesServed = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "mpcfs_read_bytes_total", Help: "Bytes served to read(2), by kind of file (segment, playlist, object).",
	}, []string{"kind"})
	// ReadLatency is the time to answer one FUSE read, by kind of file.
	ReadLatency = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name: "mpcfs_read_duration_seconds", Help: "Time to answer one FUSE read request, by kind of file.",
		Buckets: prometheus.ExponentialBuckets(50e-6, 4, 10), // 50µs .. 13s
	}, []string{"kind"})
	// OpenFiles is how many files are open, by kind.
	OpenFiles = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "mpcfs_open_files", Help: "Files open on the mount, by kind of file.",
	}, []string{"kind"})
	// StoreRequests counts requests to the object store, by operation.
	StoreRequests = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "mpcfs_store_requests_total", Help: "Requests made to the object store, by operation.",
	}, []string{"op"})
	// StoreErrors counts failed store requests, by operation and cause
	// (not_found, changed, unavailable, canceled, other).
	StoreErrors = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "mpcfs_store_errors_total", Help: "Failed object store requests, by operation and cause.",
	}, []string{"op", "cause"})
	// PlannedObjects counts the source objects (segments, init sections)
	// planners have taken into task plans: with the PROCESSING count of
	// mpcfs_tasks, its rate is the progress of long planning.
	PlannedObjects = promauto.NewCounter(prometheus.CounterOpts{
		Name: "mpcfs_planned_objects_total", Help: "Source objects (segments, init sections) taken into task plans; its rate is planning progress.",
	})
	// SpeculativeGets counts source GETs a first open started before its
	// task's plan had arrived (control/speculate.go), by what became of
	// them: used (the plan confirmed object and ETag and the first read
	// took it) or dropped (closed unused).
	SpeculativeGets = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "mpcfs_speculative_source_gets_total", Help: "Source GETs started by a first open before its task's plan arrived, by result (used, dropped).",
	}, []string{"result"})
	// Requests counts files submitted to control/encryptions, by outcome.
	Requests = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "mpcfs_requests_total", Help: "Encryption task requests submitted through control/encryptions, by result (accepted, rejected).",
	}, []string{"result"})

	_ = promauto.NewCounterFunc(prometheus.CounterOpts{
		Name: "mpcfs_warm_stream_hits_total", Help: "Segment opens that took over a stream already warmed ahead of them.",
	}, func() float64 { return float64(crypto.WarmHits()) })

	_ = promauto.NewCounterFunc(prometheus.CounterOpts{
		Name: "mpcfs_warm_stream_evictions_total", Help: "Warm streams stopped unadopted to make room for a newer one (crypto: Tuning.WarmEvictAfter).",
	}, func() float64 { return float64(crypto.WarmEvictions()) })

	_ = promauto.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mpcfs_warm_streams", Help: "Segment streams warmed ahead and not yet taken.",
	}, func() float64 { return float64(crypto.WarmHeld()) })
)

func init() {
	// The CBC lane engine's bytes by how many chains were encrypted side by
	// side: AES-128-CBC costs a core about the same for four chains as for
	// one, so the share of 1 is the CPU a sequential reader pays alone.
	for i, lanes := range []string{"1", "2", "3", "4"} {
		promauto.NewCounterFunc(prometheus.CounterOpts{
			Name: "mpcfs_cbc_lane_bytes_total", Help: "AES-128-CBC bytes the lane engine encrypted, by how many chains went side by side.",
			ConstLabels: prometheus.Labels{"lanes": lanes},
		}, func() float64 { return float64(crypto.LaneStats()[i]) })
	}
}

// taskCounts is the source of mpcfs_tasks (set by WatchTasks).
var taskCounts struct {
	sync.Mutex
	fn func() map[string]int
}

var tasksDesc = prometheus.NewDesc("mpcfs_tasks", "Tasks known to this mount, by status.", []string{"status"}, nil)

type taskCollector struct{}

func (taskCollector) Describe(ch chan<- *prometheus.Desc) { ch <- tasksDesc }

func (taskCollector) Collect(ch chan<- prometheus.Metric) {
	taskCounts.Lock()
	fn := taskCounts.fn
	taskCounts.Unlock()
	if fn == nil {
		return
	}
	for status, n := range fn() {
		ch <- prometheus.MustNewConstMetric(tasksDesc, prometheus.GaugeValue, float64(n), status)
	}
}

func init() { prometheus.MustRegister(taskCollector{}) }

// WatchTasks sets where mpcfs_tasks is read from at each scrape.
func WatchTasks(counts func() map[string]int) {
	taskCounts.Lock()
	taskCounts.fn = counts
	taskCounts.Unlock()
}

// ObserveRead records one answered read.
func ObserveRead(kind string, n int, start time.Time) {
	BytesServed.WithLabelValues(kind).Add(float64(n))
	ReadLatency.WithLabelValues(kind).Observe(time.Since(start).Seconds())
}

// InstrumentStore counts a store's requests and errors. A store that can
// make buckets (the system bucket) still can through the wrapper.
func InstrumentStore(st store.Store) store.Store {
	if st == nil {
		return nil
	}
	return &countingStore{st: st}
}

type countingStore struct{ st store.Store }

func count(op string, err error) {
	StoreRequests.WithLabelValues(op).Inc()
	if err == nil {
		return
	}
	cause := "other"
	switch {
	case errors.Is(err, store.ErrNotExist):
		cause = "not_found"
	case errors.Is(err, store.ErrChanged):
		cause = "changed"
	case errors.Is(err, store.ErrUnavailable):
		cause = "unavailable"
	case errors.Is(err, context.Canceled):
		cause = "canceled"
	}
	StoreErrors.WithLabelValues(op, cause).Inc()
}

func (c *countingStore) Buckets(ctx context.Context) ([]string, error) {
	b, err := c.st.Buckets(ctx)
	count("list_buckets", err)
	return b, err
}

func (c *countingStore) BucketExists(ctx context.Context, bucket string) (bool, error) {
	ok, err := c.st.BucketExists(ctx, bucket)
	count("head_bucket", err)
	return ok, err
}

func (c *countingStore) List(ctx context.Context, bucket, prefix string) (store.Listing, error) {
	l, err := c.st.List(ctx, bucket, prefix)
	count("list", err)
	return l, err
}

func (c *countingStore) HasPrefix(ctx context.Context, bucket, prefix string) (bool, error) {
	ok, err := c.st.HasPrefix(ctx, bucket, prefix)
	count("list", err)
	return ok, err
}

func (c *countingStore) Stat(ctx context.Context, bucket, key string) (store.ObjectInfo, error) {
	i, err := c.st.Stat(ctx, bucket, key)
	count("stat", err)
	return i, err
}

func (c *countingStore) Open(ctx context.Context, bucket, key string, off, length int64) (io.ReadCloser, error) {
	r, err := c.st.Open(ctx, bucket, key, off, length)
	count("get", err)
	return r, err
}

func (c *countingStore) OpenMatch(ctx context.Context, bucket, key, etag string, off, length int64) (io.ReadCloser, error) {
	r, err := c.st.OpenMatch(ctx, bucket, key, etag, off, length)
	count("get", err)
	return r, err
}

func (c *countingStore) Put(ctx context.Context, bucket, key string, data []byte) error {
	err := c.st.Put(ctx, bucket, key, data)
	count("put", err)
	return err
}

func (c *countingStore) PutMatch(ctx context.Context, bucket, key string, data []byte, etag string) (string, error) {
	tag, err := c.st.PutMatch(ctx, bucket, key, data, etag)
	if !errors.Is(err, store.ErrChanged) { // a lost compare-and-swap is no store error
		count("put_match", err)
	} else {
		StoreRequests.WithLabelValues("put_match").Inc()
	}
	return tag, err
}

func (c *countingStore) Delete(ctx context.Context, bucket, key string) error {
	err := c.st.Delete(ctx, bucket, key)
	count("delete", err)
	return err
}

// MakeBucket creates a bucket if the wrapped store can.
func (c *countingStore) MakeBucket(ctx context.Context, bucket string) error {
	bm, ok := c.st.(interface {
		MakeBucket(context.Context, string) error
	})
	if !ok {
		return nil // local stores create folders on Put
	}
	err := bm.MakeBucket(ctx, bucket)
	count("make_bucket", err)
	return err
}
