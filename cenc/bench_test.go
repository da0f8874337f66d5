package cenc

import (
	"context"
	"io"

	"encoding/json"
	"github.com/mpcfs/mpcfs/crypto"
	"os"
	"path/filepath"
	"testing"

	"github.com/mpcfs/mpcfs/internal/sample"
)

// BenchmarkScan measures planning's scan (subsample layout of every video
// sample and the protected moof's size) per byte of media, and reports the
// layout kept per hour of the presentation (all three representations).
// go test -run '^$' -bench Scan ./cenc/
func BenchmarkScan(b *testing.B) {
	needFFmpeg(b)
	dir := b.TempDir()
	const seconds = 20
	d, err := sample.MakeDASH(dir, seconds, false)
	if err != nil {
		b.Fatal(err)
	}
	for _, scheme := range []Scheme{CENC, CBCS} {
		b.Run(string(scheme), func(b *testing.B) {
			cfg := testConfig(scheme, true)
			type seg struct {
				data []byte
				in   *Init
			}
			var segs []seg
			var total int64
			for _, r := range d.Reps {
				initData, _ := os.ReadFile(filepath.Join(dir, r.Init))
				in, err := ProtectInit(initData, cfg, nil)
				if err != nil {
					b.Fatal(err)
				}
				for _, s := range r.Segments {
					data, _ := os.ReadFile(filepath.Join(dir, s))
					segs = append(segs, seg{data, in})
					total += int64(len(data))
				}
			}
			b.SetBytes(total)
			b.ResetTimer()
			var layoutBytes int
			for i := 0; i < b.N; i++ {
				layoutBytes = 0
				var iv uint64
				for _, s := range segs {
					l, err := Scan(s.data, s.in, cfg, &iv)
					if err != nil {
						b.Fatal(err)
					}
					j, _ := json.Marshal(l)
					layoutBytes += len(j)
				}
			}
			b.ReportMetric(float64(layoutBytes)*3600/seconds/1e6, "layoutMB/h")
		})
	}
}

// BenchmarkServe measures serving protected segments whole (the moof
// rebuilt, every sample encrypted) from local files, against copying the
// same bytes clear through crypto.File: the cost of Common Encryption on
// the serving path without the network.
func BenchmarkServe(b *testing.B) {
	dir := noisyDASH(b, 8, 4) // as the bench's media: 4 s segments
	segs, _ := filepath.Glob(filepath.Join(dir, "chunk-stream0-*.m4s"))
	d := &sample.DASH{Reps: []sample.DASHRep{{Init: "init-stream0.m4s"}}}
	for _, s := range segs {
		d.Reps[0].Segments = append(d.Reps[0].Segments, filepath.Base(s))
	}
	for _, mode := range []string{"clear", string(CENC), string(CBCS)} {
		b.Run(mode, func(b *testing.B) {
			cfg := testConfig(Scheme(mode), true)
			if mode == "clear" {
				cfg.Scheme = CENC // only for the init; nothing is encrypted
			}
			var files []func() *crypto.File
			var total int64
			for _, r := range d.Reps {
				initData, _ := os.ReadFile(filepath.Join(dir, r.Init))
				in, err := ProtectInit(initData, cfg, nil)
				if err != nil {
					b.Fatal(err)
				}
				var iv uint64
				for _, s := range r.Segments {
					p := filepath.Join(dir, s)
					data, _ := os.ReadFile(p)
					total += int64(len(data))
					if mode == "clear" {
						n := int64(len(data))
						files = append(files, func() *crypto.File {
							f, err := crypto.NewFile([]crypto.Part{{Src: fileSource(p), PlainSize: n}})
							if err != nil {
								b.Fatal(err)
							}
							return f
						})
						continue
					}
					l, err := Scan(data, in, cfg, &iv)
					if err != nil {
						b.Fatal(err)
					}
					files = append(files, func() *crypto.File {
						parts, _ := Parts(l, fileSource(p), cfg)
						f, _ := crypto.NewFile(parts)
						return f
					})
				}
			}
			b.SetBytes(total)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for _, mk := range files {
					if _, err := mk().WriteTo(context.Background(), io.Discard); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
