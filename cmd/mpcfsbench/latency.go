package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mpcfs/mpcfs/store"

	"github.com/mpcfs/mpcfs/store/miniotest"
)

// latencyProxy is a toxiproxy server between every client and MinIO: this
// kernel has no netem qdisc, and loopback MinIO answers in microseconds
// where S3 or OBS takes tens of milliseconds. Its latency toxic delays
// each piece of data by half the round trip in each direction (pieces
// are pipelined, so a stream's throughput is kept and its first byte
// pays the round trip).
type latencyProxy struct {
	api    string // toxiproxy's HTTP API, http://127.0.0.1:PORT
	listen string // the proxied MinIO, 127.0.0.1:PORT
	proc   *proc
}

// startLatency starts toxiproxy and routes the bench's endpoint through
// it; uploads made before keep going straight to MinIO.
func (b *bench) startLatency() error {
	if _, err := os.Stat(b.cfg.Toxiproxy); err != nil {
		return fmt.Errorf("no toxiproxy server at %s: run `make toxiproxy`", b.cfg.Toxiproxy)
	}
	apiAddr, err := miniotest.FreeAddr()
	if err != nil {
		return err
	}
	listen, err := miniotest.FreeAddr()
	if err != nil {
		return err
	}
	host, port, _ := net.SplitHostPort(apiAddr)
	p, err := b.start("toxiproxy", nil, b.cfg.Toxiproxy, "-host", host, "-port", port)
	if err != nil {
		return err
	}
	lp := &latencyProxy{api: "http://" + apiAddr, listen: listen, proc: p}
	if err := lp.waitAPI(); err != nil {
		return err
	}
	u, err := url.Parse(b.ep)
	if err != nil {
		return err
	}
	if err := lp.post("/proxies", map[string]any{"name": "minio", "listen": listen, "upstream": u.Host, "enabled": true}); err != nil {
		return err
	}
	half := b.cfg.LatencyMS / 2
	for _, stream := range []string{"upstream", "downstream"} {
		if err := lp.post("/proxies/minio/toxics", map[string]any{"name": "latency_" + stream, "type": "latency",
			"stream": stream, "toxicity": 1.0, "attributes": map[string]int{"latency": half, "jitter": 0}}); err != nil {
			return err
		}
	}
	st, err := store.NewS3(store.S3Config{Endpoint: "http://" + listen, Region: "us-east-1", AccessKey: b.ak, SecretKey: b.sk})
	if err != nil {
		return err
	}
	b.proxy, b.ep, b.st = lp, "http://"+listen, st
	rtt, err := b.measureRTT()
	if err != nil {
		return fmt.Errorf("through toxiproxy: %w", err)
	}
	fmt.Fprintf(os.Stderr, "mpcfsbench: MinIO behind toxiproxy at %s, latency toxics %d ms each way; a HEAD takes %v\n", listen, half, rtt.Round(100*time.Microsecond))
	b.report.rttMs = float64(rtt.Microseconds()) / 1000
	return nil
}

// measureRTT times one small request through the proxy (after one that
// opens the connection): what a round trip costs a client.
func (b *bench) measureRTT() (time.Duration, error) {
	ctx, cancel := contextTimeout(30 * time.Second)
	defer cancel()
	key := mediaPrefix + "index.m3u8"
	if _, err := b.st.Stat(ctx, mediaBucket, key); err != nil {
		return 0, err
	}
	var ds []float64
	for range 5 {
		t := time.Now()
		if _, err := b.st.Stat(ctx, mediaBucket, key); err != nil {
			return 0, err
		}
		ds = append(ds, float64(time.Since(t)))
	}
	return time.Duration(median(ds)), nil
}

func (lp *latencyProxy) waitAPI() error {
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if !lp.proc.running() {
			return fmt.Errorf("toxiproxy exited at start (see logs/toxiproxy.log)")
		}
		if resp, err := http.Get(lp.api + "/version"); err == nil {
			resp.Body.Close()
			return nil
		}
	}
	return fmt.Errorf("toxiproxy API did not answer within 20 s")
}

func (lp *latencyProxy) post(path string, body any) error {
	data, _ := json.Marshal(body)
	resp, err := http.Post(lp.api+path, "application/json", bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("toxiproxy %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("toxiproxy %s: %s: %s", path, resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// firstByteRows time open(2) to the first read(2) returning data of the
// first segment, cold, for the raw GET and each mount: at real S3
// latency that is what a player waits before it can start.
func (b *bench) firstByteRows(m *mpcfsMount) error {
	first := b.media.segs[0]
	buf := make([]byte, 4096)
	measure := func(name string, fn func() error) error {
		r := &row{name: name}
		for i := range b.cfg.Runs {
			b.dropCaches()
			t := time.Now()
			if err := fn(); err != nil {
				return fmt.Errorf("first byte, %s (run %d): %w", name, i+1, err)
			}
			r.cold = append(r.cold, float64(time.Since(t).Microseconds())/1000)
		}
		fmt.Fprintf(os.Stderr, "  %-34s first byte %6.1f ms (runs: %s)\n", name, median(r.cold), runListMs(r.cold))
		b.report.firstByte = append(b.report.firstByte, r)
		return nil
	}
	fileFirst := func(p string) func() error {
		return func() error {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.Read(buf)
			return err
		}
	}
	if err := measure(rawName, func() error {
		ctx, cancel := contextTimeout(time.Minute)
		defer cancel()
		rc, err := b.st.Open(ctx, mediaBucket, mediaPrefix+first, 0, -1)
		if err != nil {
			return err
		}
		defer rc.Close()
		_, err = rc.Read(buf)
		return err
	}); err != nil {
		return err
	}
	if err := measure("mpcfs plaintext passthrough", fileFirst(filepath.Join(m.dir, "buckets", mediaBucket, mediaPrefix, first))); err != nil {
		return err
	}
	if err := measure("mpcfs AES-128-CBC output", fileFirst(filepath.Join(m.dir, "buckets", outBucket, "cbc", first))); err != nil {
		return err
	}
	// The mount above ran the task and keeps its plan; a mount that did
	// not (another host, or a restart) reads the task's record and plan
	// on the first open of one of its outputs. A new mount each run, its
	// start not timed.
	fresh := &row{name: freshFirstByte}
	for i := range b.cfg.Runs {
		fm, err := b.mountMpcfsAs(fmt.Sprintf("mpcfs-fresh%d", i+1))
		if err != nil {
			return err
		}
		b.dropCaches()
		t := time.Now()
		err = fileFirst(filepath.Join(fm.dir, "buckets", outBucket, "cbc", first))()
		fresh.cold = append(fresh.cold, float64(time.Since(t).Microseconds())/1000)
		b.stopMount(fm.proc, fm.dir)
		if err != nil {
			return fmt.Errorf("first byte, %s (run %d): %w", fresh.name, i+1, err)
		}
	}
	fmt.Fprintf(os.Stderr, "  %-34s first byte %6.1f ms (runs: %s)\n", fresh.name, median(fresh.cold), runListMs(fresh.cold))
	b.report.firstByte = append(b.report.firstByte, fresh)
	if have("s3fs", "") {
		p, dir, err := b.mountS3fs("mnt-s3fs-first")
		if err != nil {
			return err
		}
		defer b.stopMount(p, dir)
		return measure("s3fs mount", fileFirst(filepath.Join(dir, strings.TrimSuffix(mediaPrefix, "/"), first)))
	}
	return nil
}

// freshFirstByte is the first-byte row of a mount that did not run the
// task (its timing excludes the mount's start).
const freshFirstByte = "mpcfs AES-128-CBC output, first open on a mount that did not run the task"

func runListMs(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprintf("%.1f", x)
	}
	return strings.Join(s, " ")
}
