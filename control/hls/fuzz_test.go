package hls

import "testing"

// FuzzParseRewrite: whatever Parse accepts as a media playlist, RewriteMedia
// must rewrite without panicking, keeping every source line, giving every
// segment and init section the key asked, and producing a playlist that
// Parse accepts again. Seeds: the samples plus testdata/fuzz/FuzzParseRewrite.
func FuzzParseRewrite(f *testing.F) {
	for _, name := range append(mediaSamples, "a/master.m3u8", "e/master_iframes.m3u8") {
		f.Add(readTD(f, name))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil || p.Master {
			return
		}
		n := len(p.Segments)
		encMaps := make([]MapOut, len(p.Maps))
		for i := range encMaps {
			encMaps[i].Key = k2
		}
		for _, c := range []struct {
			outs []SegmentOut
			maps []MapOut
		}{{allOuts(n, k1), nil}, {allOuts(n, k2), encMaps}, {mixedOuts(n), nil}} {
			out, err := RewriteMedia(data, p, c.outs, c.maps)
			if p.Encrypted {
				if err == nil {
					t.Fatal("rewrote an encrypted source")
				}
				return
			}
			if err != nil {
				t.Fatalf("RewriteMedia: %v", err)
			}
			checkKeepsLines(t, data, out)
			checkKeys(t, out, c.outs, c.maps, len(p.Maps))
			q, err := Parse(out)
			if err != nil {
				t.Fatalf("Parse(output): %v\n%s", err, out)
			}
			if len(q.Segments) != n || len(q.Maps) != len(p.Maps) {
				t.Fatalf("output has %d segments / %d maps, want %d / %d", len(q.Segments), len(q.Maps), n, len(p.Maps))
			}
		}
	})
}
