package crypto

import (
	"bytes"
	"context"
	"math/rand"
	"testing"
)

// TestDataOutlivesRotation holds every Data handed out while the Reader
// streams on (letting go of the chunks it served, which would recycle
// their buffers) and closes it, then checks each Data still holds its bytes: a FUSE reply
// written from a Data must never see a buffer reused under it.
func TestDataOutlivesRotation(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	for _, alg := range []Algorithm{"", AES128CBC, AES128CTR} {
		f, src := onePart(t, r, alg, 5*chunkSize+1234, testIV)
		want := reference(t, alg, testKey, testIV, src.data)
		rd := f.NewReader()
		var held []Data
		var offs []int64
		const req = 300 << 10 // not a divisor of chunkSize: replies span chunks
		for off := int64(0); off < f.Size(); off += req {
			d, err := rd.ReadData(context.Background(), off, req)
			if err != nil {
				t.Fatalf("%s: ReadData(%d): %v", alg, off, err)
			}
			held, offs = append(held, d), append(offs, off)
		}
		rd.Close()
		// Make and drop more chunks, so that recycled buffers get rewritten.
		readSeq(t, f, 1<<20)
		for i, d := range held {
			got := bytes.Join(d.Slices, nil)
			end := min(offs[i]+req, f.Size())
			if len(got) != d.Len() || !bytes.Equal(got, want[offs[i]:end]) {
				t.Fatalf("%s: Data at %d: %d bytes, want %d; equal %v", alg, offs[i], len(got), end-offs[i], bytes.Equal(got, want[offs[i]:end]))
			}
			d.Release()
			d.Release() // a second Release is a no-op
		}
	}
}
