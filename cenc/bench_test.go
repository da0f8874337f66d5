package cenc

import (
	"encoding/json"
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
