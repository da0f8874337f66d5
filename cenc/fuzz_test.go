package cenc

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/mpcfs/mpcfs/crypto"
	"github.com/mpcfs/mpcfs/internal/sample"
)

// FuzzScan: any segment bytes under a real protected init either fail to
// plan with an error or plan to a layout whose served output has exactly
// the planned size; nothing panics (mp4ff's panics become errors).
func FuzzScan(f *testing.F) {
	needFFmpeg(f)
	dir := f.TempDir()
	d, err := sample.MakeDASH(dir, 1, false)
	if err != nil {
		f.Fatal(err)
	}
	initData, _ := os.ReadFile(filepath.Join(dir, d.Reps[0].Init))
	for _, s := range d.Reps[0].Segments {
		seg, _ := os.ReadFile(filepath.Join(dir, s))
		f.Add(seg, false)
		f.Add(seg, true)
	}
	f.Fuzz(func(t *testing.T, seg []byte, cbcs bool) {
		cfg := testConfig(CENC, true)
		if cbcs {
			cfg = testConfig(CBCS, true)
		}
		in, err := ProtectInit(initData, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		var iv uint64
		l, err := Scan(seg, in, cfg, &iv)
		if err != nil {
			return
		}
		src := func(ctx context.Context, off, n int64) (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(seg[off : off+n])), nil
		}
		parts, err := Parts(l, src, cfg)
		if err != nil {
			return
		}
		file, err := crypto.NewFile(parts)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if _, err := file.WriteTo(context.Background(), &out); err == nil && int64(out.Len()) != l.Size {
			t.Fatalf("served %d bytes, planned %d", out.Len(), l.Size)
		}
	})
}
