package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mpcfs/mpcfs/httpapi"
	"github.com/mpcfs/mpcfs/store/miniotest"
)

// The HTTP side (mpcfs mount --listen): the origin against nginx serving
// the same outputs from the mount and against raw S3 GETs, sequential and
// with httpClients concurrent clients (throughput, time to first byte,
// RSS), and API creates with apiClients concurrent signed clients.
const (
	httpClients   = 64
	apiClients    = 16
	apiPerClient  = 20
	originRowName = "mpcfs origin (HTTP GET), AES-128-CBC"
	nginxRowName  = "nginx over the mpcfs mount, AES-128-CBC"
)

// benchCred is the API user of the bench's mount (a throwaway).
var benchCred = httpapi.Credential{AccessKey: "AKBENCH", SecretKey: randHex(16), ProjectID: "bench"}

// httpArgs are the flags that make the bench's mount serve HTTP too.
func (b *bench) httpArgs() (addr string, args []string, err error) {
	addr, err = miniotest.FreeAddr()
	if err != nil {
		return "", nil, err
	}
	creds, err := b.writeSecret("api-credentials", []byte(fmt.Sprintf("%s:%s:%s\n", benchCred.AccessKey, benchCred.SecretKey, benchCred.ProjectID)))
	if err != nil {
		return "", nil, err
	}
	return addr, []string{"--listen", addr, "--api-credentials", creds}, nil
}

// loadRow is one line of the concurrent-clients table.
type loadRow struct {
	name           string
	mbs, p50, p99  []float64 // per run; times to first byte in ms
	whole50        []float64 // per run; times to the last byte in ms
	whole99        []float64
	rss            float64
	requests, errs int
}

var httpClient = &http.Client{Transport: &http.Transport{
	MaxIdleConnsPerHost: 2 * httpClients, DisableCompression: true, IdleConnTimeout: time.Minute,
}}

// httpGet fetches url through, returning the bytes and the time to the
// first body byte.
func httpGet(url string, buf []byte) (int64, time.Duration, error) {
	t := time.Now()
	resp, err := httpClient.Get(url)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return 0, 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	n, err := resp.Body.Read(buf[:1])
	ttfb := time.Since(t)
	if err != nil && err != io.EOF {
		return int64(n), ttfb, err
	}
	rest, err := drain(resp.Body, buf)
	return int64(n) + rest, ttfb, err
}

func getAll(urls []string) (int64, error) {
	buf := make([]byte, readBuf)
	var total int64
	for _, u := range urls {
		n, _, err := httpGet(u, buf)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// load runs clients concurrent fetchers over items requests (item i is
// urls[i%len]) and returns MB/s, the times to first byte and to the last.
func load(clients, items int, fetch func(i int, buf []byte) (int64, time.Duration, error)) (float64, []time.Duration, []time.Duration, int, error) {
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		total  int64
		ttfbs  []time.Duration
		wholes []time.Duration
		errs   int
		first  error
	)
	next := make(chan int, items)
	for i := range items {
		next <- i
	}
	close(next)
	t := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, readBuf)
			for i := range next {
				start := time.Now()
				n, ttfb, err := fetch(i, buf)
				whole := time.Since(start)
				mu.Lock()
				total += n
				if err != nil {
					errs++
					if first == nil {
						first = err
					}
				} else {
					ttfbs, wholes = append(ttfbs, ttfb), append(wholes, whole)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return float64(total) / 1e6 / time.Since(t).Seconds(), ttfbs, wholes, errs, first
}

func percentileMs(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p*float64(len(s))+0.5) - 1
	return float64(s[max(0, min(i, len(s)-1))].Microseconds()) / 1000
}

// loadRows measures fetch with httpClients clients, cold, Runs times.
func (b *bench) loadRow(name string, p *proc, items int, fetch func(i int, buf []byte) (int64, time.Duration, error)) (*loadRow, error) {
	r := &loadRow{name: name}
	if p != nil {
		p.resetHWM()
	}
	for range b.cfg.Runs {
		b.dropCaches()
		mbs, ttfbs, wholes, errs, err := load(httpClients, items, fetch)
		if errs > items/100 {
			return nil, fmt.Errorf("%s: %d of %d requests failed, first: %v", name, errs, items, err)
		}
		r.mbs, r.p50, r.p99 = append(r.mbs, mbs), append(r.p50, percentileMs(ttfbs, .5)), append(r.p99, percentileMs(ttfbs, .99))
		r.whole50, r.whole99 = append(r.whole50, percentileMs(wholes, .5)), append(r.whole99, percentileMs(wholes, .99))
		r.requests, r.errs = r.requests+items, r.errs+errs
	}
	if p != nil {
		r.rss = p.hwmMB()
	}
	fmt.Fprintf(os.Stderr, "  %-34s %d clients %8.0f MB/s (runs %s), TTFB p50 %.1f ms p99 %.1f ms, whole GET p50 %.0f ms p99 %.0f ms, peak RSS %.0f MB\n",
		name, httpClients, median(r.mbs), runList(r.mbs), median(r.p50), median(r.p99), median(r.whole50), median(r.whole99), r.rss)
	return r, nil
}

// originRows runs the HTTP rows on the bench's mount (m.http set).
func (b *bench) originRows(m *mpcfsMount) error {
	segURL := func(base string) []string {
		urls := make([]string, len(b.media.segs))
		for i, s := range b.media.segs {
			urls[i] = base + "/" + s
		}
		return urls
	}
	origin := segURL(m.http + "/buckets/" + outBucket + "/cbc")
	items := max(len(origin), 4*httpClients)

	r := &row{name: originRowName, daemon: m.proc}
	m.proc.resetHWM()
	w0 := warmCounts(m.http)
	passes := 0 // warm figures may read the set more than once (-warm-min)
	if err := b.seqRows(r, func() (int64, error) { passes++; return getAll(origin) }); err != nil {
		return err
	}
	r.rss = m.proc.hwmMB()
	w1 := warmCounts(m.http)
	r.note = warmNote(w0, w1, passes*len(origin))
	fmt.Fprintf(os.Stderr, "  %-34s %s\n", "", r.note)
	b.report.seq = append(b.report.seq, r)

	var nginx []string
	// nginx as its users run it: a worker per core, serving the mount's
	// buckets/ folder.
	if ng, addr, err := b.startNginx(filepath.Join(m.dir, "buckets"), true); err != nil {
		b.report.notes = append(b.report.notes, "nginx rows skipped: "+err.Error())
	} else {
		defer ng.stop()
		nginx = segURL("http://" + addr + "/" + outBucket + "/cbc")
		r := &row{name: nginxRowName, daemon: m.proc}
		if err := b.seqRows(r, func() (int64, error) { return getAll(nginx) }); err != nil {
			return err
		}
		b.report.seq = append(b.report.seq, r)
	}

	rows := []*loadRow{}
	keys := make([]string, len(b.media.segs))
	for i, s := range b.media.segs {
		keys[i] = mediaPrefix + s
	}
	raw, err := b.loadRow(rawName, nil, items, func(i int, buf []byte) (int64, time.Duration, error) {
		t := time.Now()
		rc, err := b.st.Open(context.Background(), mediaBucket, keys[i%len(keys)], 0, -1)
		if err != nil {
			return 0, 0, err
		}
		defer rc.Close()
		n, err := rc.Read(buf[:1])
		ttfb := time.Since(t)
		rest, err2 := drain(rc, buf)
		if err == io.EOF {
			err = nil
		}
		return int64(n) + rest, ttfb, firstErr(err, err2)
	})
	if err != nil {
		return err
	}
	rows = append(rows, raw)
	or, err := b.loadRow(originRowName, m.proc, items, func(i int, buf []byte) (int64, time.Duration, error) { return httpGet(origin[i%len(origin)], buf) })
	if err != nil {
		return err
	}
	rows = append(rows, or)
	if nginx != nil {
		nr, err := b.loadRow(nginxRowName, m.proc, items, func(i int, buf []byte) (int64, time.Duration, error) { return httpGet(nginx[i%len(nginx)], buf) })
		if err != nil {
			return err
		}
		rows = append(rows, nr)
	}
	b.report.load = rows
	return b.apiRows(m)
}

// warmNote says how the warm-ahead went between two warmCounts: the
// origin's sequential speed depends on it.
func warmNote(w0, w1 map[string]float64, gets int) string {
	d := func(k string) float64 { return w1[k] - w0[k] }
	lanes := []float64{d(`mpcfs_cbc_lane_bytes_total{lanes="1"}`), d(`mpcfs_cbc_lane_bytes_total{lanes="2"}`),
		d(`mpcfs_cbc_lane_bytes_total{lanes="3"}`), d(`mpcfs_cbc_lane_bytes_total{lanes="4"}`)}
	total := lanes[0] + lanes[1] + lanes[2] + lanes[3]
	share := make([]string, len(lanes))
	for i, l := range lanes {
		share[i] = fmt.Sprintf("%.0f%%", 100*l/max(total, 1))
	}
	return fmt.Sprintf("%d GETs, %.0f took a warm stream; %.0f warm streams held at the start, %.0f replaced by newer ones; CBC bytes in 1/2/3/4 lanes: %s",
		gets, d("mpcfs_warm_stream_hits_total"), w0["mpcfs_warm_streams"], d("mpcfs_warm_stream_evictions_total"), strings.Join(share, "/"))
}

// warmCounts reads the daemon's warm-stream metrics (metrics it lacks
// read 0): warm-ahead is what makes the origin's sequential GETs fast.
func warmCounts(base string) map[string]float64 {
	got := map[string]float64{}
	resp, err := httpClient.Get(base + "/metrics")
	if err != nil {
		return got
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(data), "\n") {
		if name, val, ok := strings.Cut(l, " "); ok && (strings.HasPrefix(name, "mpcfs_warm_") || strings.HasPrefix(name, "mpcfs_cbc_lane_")) {
			var v float64
			if _, err := fmt.Sscan(val, &v); err == nil {
				got[name] = v
			}
		}
	}
	return got
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// apiRows times signed creates (POST to 202) from apiClients clients.
func (b *bench) apiRows(m *mpcfsMount) error {
	key := make([]byte, 16)
	rand.Read(key)
	var (
		mu   sync.Mutex
		lat  []time.Duration
		errs []string
		wg   sync.WaitGroup
	)
	t0 := time.Now()
	for c := range apiClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range apiPerClient {
				body, _ := json.Marshal(map[string]any{
					"input":  map[string]string{"bucket": mediaBucket, "location": "region1", "object": mediaPrefix + "index.m3u8"},
					"output": map[string]string{"bucket": outBucket, "location": "region1", "object": fmt.Sprintf("api-%d-%d", c, i)},
					"encryption": map[string]any{"hls_encrypt": map[string]string{
						"key": base64.StdEncoding.EncodeToString(key), "url": "https://keys.example.com/bench", "algorithm": "AES-128-CBC"}},
				})
				req, _ := http.NewRequest("POST", m.http+"/v1/"+benchCred.ProjectID+"/encryptions", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				httpapi.Sign(req, body, benchCred, time.Now())
				t := time.Now()
				resp, err := httpClient.Do(req)
				d := time.Since(t)
				status := 0
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					status = resp.StatusCode
				}
				mu.Lock()
				if status == http.StatusAccepted {
					lat = append(lat, d)
				} else if len(errs) < 3 {
					errs = append(errs, fmt.Sprintf("status %d, %v", status, err))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	took := time.Since(t0)
	if len(errs) > 0 {
		return fmt.Errorf("API creates failed: %s", strings.Join(errs, "; "))
	}
	b.report.apiP50, b.report.apiP99 = percentileMs(lat, .5), percentileMs(lat, .99)
	b.report.apiRate = float64(len(lat)) / took.Seconds()
	fmt.Fprintf(os.Stderr, "  API create, %d clients: p50 %.1f ms, p99 %.1f ms, %.0f creates/s\n", apiClients, b.report.apiP50, b.report.apiP99, b.report.apiRate)
	return nil
}

// originSection is the report's HTTP part.
func (b *bench) originSection(s *strings.Builder) {
	r := b.report
	if len(r.load) == 0 && r.apiP99 == 0 {
		return
	}
	fmt.Fprintf(s, "\n## HTTP: the origin and the API (`mpcfs mount --listen`)\n\n"+
		"%d concurrent HTTP clients (Go, keep-alive, 127.0.0.1), %d GETs of the segments per run, cold; "+
		"TTFB = request sent to first body byte, whole = to the last byte; peak RSS of the serving process (mpcfs for the origin and nginx rows). "+
		"Each segment is fetched about %d times per run: nginx serves the repeats from the mount's page cache, "+
		"the origin encrypts every GET again (it keeps no output cache).\n\n"+
		"| row | aggregate MB/s | x raw | TTFB p50 ms | TTFB p99 ms | whole GET p50 ms | whole GET p99 ms | peak RSS MB |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
		httpClients, max(len(b.media.segs), 4*httpClients), max(1, max(len(b.media.segs), 4*httpClients)/max(1, len(b.media.segs))))
	var rawMBs float64
	for _, x := range r.load {
		if x.name == rawName {
			rawMBs = median(x.mbs)
		}
	}
	for _, x := range r.load {
		fmt.Fprintf(s, "| %s | %s | %s | %.1f | %.1f | %.0f | %.0f | %s |\n", x.name, numSpread(x.mbs), ratio(median(x.mbs), rawMBs),
			median(x.p50), median(x.p99), median(x.whole50), median(x.whole99), num(x.rss))
	}
	fmt.Fprintf(s, "\nAPI create (signed POST to 202), %d clients x %d: p50 **%.1f ms**, p99 **%.1f ms**, %.0f creates/s.\n",
		apiClients, apiPerClient, r.apiP50, r.apiP99, r.apiRate)
	origin, nginx, raw := r.find(r.seq, originRowName), r.find(r.seq, nginxRowName), r.find(r.seq, rawName)
	s.WriteString("\n| target (HTTP) | measured | met |\n|---|---:|---|\n")
	check := func(name string, got, want float64, less bool, unit string) {
		verdict := "n/a"
		if got != 0 {
			verdict = map[bool]string{true: "yes", false: "**no**"}[(less && got < want) || (!less && got >= want)]
		}
		fmt.Fprintf(s, "| %s | %.2f%s | %s |\n", name, got, unit, verdict)
	}
	check("origin cold >= 1.2x nginx over the mount cold", div(medianOf(origin), medianOf(nginx)), 1.2, false, "x")
	check("origin cold >= 0.85x raw S3 GET cold", div(medianOf(origin), medianOf(raw)), 0.85, false, "x")
	check(fmt.Sprintf("API create p99 < 50 ms, %d clients", apiClients), r.apiP99, 50, true, " ms")
}
