package hls

import (
	"fmt"
	"strings"
	"testing"
)

func rewrite(t *testing.T, name string, outs []SegmentOut, maps []MapOut) string {
	t.Helper()
	data := readTD(t, name)
	p := mustParse(t, data)
	out, err := RewriteMedia(data, p, outs, maps)
	if err != nil {
		t.Fatalf("RewriteMedia(%s): %v", name, err)
	}
	checkKeepsLines(t, data, out)
	checkKeys(t, out, outs, maps, len(p.Maps))
	return string(out)
}

// TestRewriteGolden shows the whole output for the hand-written playlist:
// keys after the EXT-X-MAP, before the first segment tag; METHOD=NONE before
// an EXT-X-MAP (clear init section) and for a clear segment; range rewritten.
func TestRewriteGolden(t *testing.T) {
	outs := []SegmentOut{{Key: k1}, {Key: k1}, {}, {Key: k2, ByteRange: &ByteRange{12000, 10800}}, {Key: k2}}
	got := rewrite(t, "d/multimap.m3u8", outs, nil)
	want := `#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:4
#EXT-X-MEDIA-SEQUENCE:100
#EXT-X-DISCONTINUITY-SEQUENCE:3
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-INDEPENDENT-SEGMENTS
# hand-written: two renditions spliced together, each with its own init section
#EXT-X-X-VENDOR-HEADER:opaque=1
#EXT-X-MAP:URI="part1/init.mp4"
#EXT-X-KEY:METHOD=AES-128,URI="https://keys.example/k1?t=a,b"
#EXT-X-PROGRAM-DATE-TIME:2024-01-01T00:00:00.000Z
#EXTINF:4.000,first
part1/seg0.m4s
#EXT-X-CUE-OUT:DURATION=3.5
#EXTINF:3.5,
part1/seg1.m4s

## comment between segments
#EXT-X-DISCONTINUITY
#EXT-X-KEY:METHOD=NONE
#EXT-X-MAP:URI="part2/all.mp4",BYTERANGE="800@0"
#EXT-X-PROGRAM-DATE-TIME:2024-01-01T00:01:00.000Z
#EXTINF:4,
#EXT-X-BYTERANGE:10000@800
part2/all.mp4
#EXT-X-CUE-IN
#EXT-X-KEY:METHOD=AES-128,URI="k2.key",IV=0x000102030405060708090a0b0c0d0e0f
#EXT-X-BYTERANGE:12000@10800
#EXTINF:2.5,
part2/all.mp4
#EXT-X-BITRATE:900
#EXTINF:1.25,title with, a comma
part2/all%20mp4/seg%2Cx.m4s
#EXT-X-ENDLIST
`
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

// TestRewriteMapKeys: an encrypted init section gets its key right before
// its EXT-X-MAP, and the segments' key is re-issued after it.
func TestRewriteMapKeys(t *testing.T) {
	maps := []MapOut{{}, {Key: k2, ByteRange: &ByteRange{816, 0}}}
	got := rewrite(t, "d/multimap.m3u8", allOuts(5, k1), maps)
	want := "#EXT-X-DISCONTINUITY\n" + keyLine(k2) + "\n" +
		"#EXT-X-MAP:URI=\"part2/all.mp4\",BYTERANGE=\"816@0\"\n" + keyLine(k1) + "\n#EXT-X-PROGRAM-DATE-TIME:2024-01-01T00:01:00.000Z\n"
	if !strings.Contains(got, want) {
		t.Errorf("missing\n%s\nin\n%s", want, got)
	}
	if n := strings.Count(got, "#EXT-X-KEY:"); n != 3 {
		t.Errorf("%d EXT-X-KEY lines, want 3:\n%s", n, got)
	}
	// Same key for the init section and the segments: one EXT-X-KEY, before the map.
	got = rewrite(t, "b/index.m3u8", allOuts(3, k2), []MapOut{{Key: k2}})
	if !strings.Contains(got, "#EXT-X-PLAYLIST-TYPE:VOD\n"+keyLine(k2)+"\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF") ||
		strings.Count(got, "#EXT-X-KEY:") != 1 {
		t.Errorf("got\n%s", got)
	}
	// Default: the init section stays clear, the key comes after its map.
	got = rewrite(t, "b/index.m3u8", allOuts(3, k1), nil)
	if !strings.Contains(got, "#EXT-X-MAP:URI=\"init.mp4\"\n"+keyLine(k1)+"\n#EXTINF:2.000000,\nseg0.m4s\n#EXTINF:2.000000,\nseg1.m4s") {
		t.Errorf("got\n%s", got)
	}
}

// TestRewriteClearEncClear: a clear segment after an encrypted one gets
// METHOD=NONE; a clear first segment gets nothing.
func TestRewriteClearEncClear(t *testing.T) {
	got := rewrite(t, "a/720p/index.m3u8", []SegmentOut{{}, {Key: k1}, {}}, nil)
	want := `#EXTM3U
#EXT-X-VERSION:3
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-PLAYLIST-TYPE:VOD
#EXTINF:2.000000,
seg0.ts
#EXT-X-KEY:METHOD=AES-128,URI="https://keys.example/k1?t=a,b"
#EXTINF:2.000000,
seg1.ts
#EXT-X-KEY:METHOD=NONE
#EXTINF:2.000000,
seg2.ts
#EXT-X-ENDLIST
`
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	if got := rewrite(t, "a/720p/index.m3u8", make([]SegmentOut, 3), nil); got != string(readTD(t, "a/720p/index.m3u8")) {
		t.Errorf("all clear: output differs from source:\n%s", got)
	}
}

// padded is the size of n bytes after AES-CBC with PKCS#7 padding.
func padded(n int64) int64 { return n/16*16 + 16 }

// encryptRanges gives the ranges of a single file whose pieces (init
// section and segments, contiguous) are each encrypted on their own.
func encryptRanges(p *Playlist, encMap bool, key *KeyTag) ([]SegmentOut, []MapOut) {
	var off int64
	var maps []MapOut
	if len(p.Maps) > 0 {
		n := p.Maps[0].ByteRange.Len
		var k *KeyTag
		if encMap {
			n, k = padded(n), key
		}
		maps = []MapOut{{ByteRange: &ByteRange{n, 0}, Key: k}}
		off = n
	}
	outs := make([]SegmentOut, len(p.Segments))
	for i, s := range p.Segments {
		outs[i] = SegmentOut{Key: key, ByteRange: &ByteRange{padded(s.ByteRange.Len), off}}
		off += padded(s.ByteRange.Len)
	}
	return outs, maps
}

func TestRewriteByteRanges(t *testing.T) {
	p := mustParse(t, readTD(t, "c/ts.m3u8"))
	outs, _ := encryptRanges(p, false, k1)
	got := rewrite(t, "c/ts.m3u8", outs, nil)
	for _, l := range []string{"#EXT-X-BYTERANGE:37616@0", "#EXT-X-BYTERANGE:37424@37616", "#EXT-X-BYTERANGE:37984@75040"} {
		if !strings.Contains(got, "\n"+l+"\n") {
			t.Errorf("missing %s in\n%s", l, got)
		}
	}
	p = mustParse(t, readTD(t, "c/fmp4.m3u8"))
	outs, maps := encryptRanges(p, true, k2)
	got = rewrite(t, "c/fmp4.m3u8", outs, maps)
	want := `#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-KEY:METHOD=AES-128,URI="k2.key",IV=0x000102030405060708090a0b0c0d0e0f
#EXT-X-MAP:URI="fmp4.m4s",BYTERANGE="1360@0"
#EXTINF:2.000000,
#EXT-X-BYTERANGE:28656@1360
fmp4.m4s
#EXTINF:2.000000,
#EXT-X-BYTERANGE:28592@30016
fmp4.m4s
#EXTINF:2.000000,
#EXT-X-BYTERANGE:29408@58608
fmp4.m4s
#EXT-X-ENDLIST
`
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	grafovReads(t, []byte(got), 3)
	// An unquoted BYTERANGE (as grafov/m3u8 writes it) comes back quoted.
	data := []byte("#EXTM3U\n#EXT-X-MAP:URI=\"i.mp4\",BYTERANGE=700@0,X-A=1\n#EXTINF:1,\na.ts\n")
	out, err := RewriteMedia(data, mustParse(t, data), make([]SegmentOut, 1), []MapOut{{ByteRange: &ByteRange{704, 0}}})
	if err != nil || !strings.Contains(string(out), "\n#EXT-X-MAP:URI=\"i.mp4\",BYTERANGE=\"704@0\",X-A=1\n") {
		t.Errorf("unquoted map range: %v\n%s", err, out)
	}
}

func TestRewriteVersion(t *testing.T) {
	for _, tc := range []struct {
		in   string
		key  *KeyTag
		want string
	}{
		{"#EXTM3U\n#EXTINF:1,\na.ts\n", k2, "#EXTM3U\n#EXT-X-VERSION:2\n" + keyLine(k2) + "\n#EXTINF:1,\na.ts\n"},
		{"#EXTM3U\n#EXT-X-VERSION:1\n#EXTINF:1,\na.ts\n", k2, "#EXTM3U\n#EXT-X-VERSION:2\n" + keyLine(k2) + "\n#EXTINF:1,\na.ts\n"},
		{"#EXTM3U\n#EXTINF:1,\na.ts\n", k1, "#EXTM3U\n" + keyLine(k1) + "\n#EXTINF:1,\na.ts\n"},
		{"#EXTM3U\n#EXT-X-VERSION:3\n#EXTINF:1,\na.ts\n", k2, "#EXTM3U\n#EXT-X-VERSION:3\n" + keyLine(k2) + "\n#EXTINF:1,\na.ts\n"},
	} {
		data := []byte(tc.in)
		out, err := RewriteMedia(data, mustParse(t, data), allOuts(1, tc.key), nil)
		if err != nil || string(out) != tc.want {
			t.Errorf("%q: %v\n got %q\nwant %q", tc.in, err, out, tc.want)
		}
		checkKeepsLines(t, data, out)
	}
}

// TestRewriteSourceKeyNone: a source METHOD=NONE is kept, and since it ends
// our key for the players, the key is re-issued after it.
func TestRewriteSourceKeyNone(t *testing.T) {
	data := []byte("#EXTM3U\n#EXTINF:1,\na.ts\n#EXTINF:1,\n#EXT-X-KEY:METHOD=NONE\nb.ts\n#EXTINF:1,\nc.ts\n")
	outs := allOuts(3, k1)
	out, err := RewriteMedia(data, mustParse(t, data), outs, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := "#EXTM3U\n" + keyLine(k1) + "\n#EXTINF:1,\na.ts\n#EXTINF:1,\n#EXT-X-KEY:METHOD=NONE\n" + keyLine(k1) + "\nb.ts\n#EXTINF:1,\nc.ts\n"
	if string(out) != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
	checkKeys(t, out, outs, nil, 0)
}

func TestRewriteErrors(t *testing.T) {
	media := readTD(t, "c/fmp4.m3u8")
	pm := mustParse(t, media)
	plain := readTD(t, "a/720p/index.m3u8")
	pp := mustParse(t, plain)
	master := readTD(t, "a/master.m3u8")
	enc := []byte("#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"k\"\n#EXTINF:1,\na.ts\n")
	noOff := []byte("#EXTM3U\n#EXTINF:1,\n#EXT-X-BYTERANGE:10@0\na.ts\n#EXTINF:1,\n#EXT-X-BYTERANGE:10\na.ts\n")
	r := &ByteRange{16, 0}
	for _, tc := range []struct {
		name string
		data []byte
		p    *Playlist
		outs []SegmentOut
		maps []MapOut
		want string
	}{
		{"master", master, mustParse(t, master), nil, nil, "needs a media playlist"},
		{"nil playlist", plain, nil, nil, nil, "needs a media playlist"},
		{"mismatch", plain, pm, make([]SegmentOut, 3), nil, "does not match"},
		{"encrypted source", enc, mustParse(t, enc), make([]SegmentOut, 1), nil, "already encrypted"},
		{"outs length", plain, pp, make([]SegmentOut, 2), nil, "2 outs for 3 segments"},
		{"maps length", media, pm, make([]SegmentOut, 3), []MapOut{{}, {}}, "2 map outs for 1 EXT-X-MAPs"},
		{"quote in key URI", plain, pp, allOuts(3, &KeyTag{Method: "AES-128", URI: `a"b`}), nil, "segment 0: key URI"},
		{"newline in key URI", plain, pp, allOuts(3, &KeyTag{Method: "AES-128", URI: "a\nb"}), nil, "segment 0: key URI"},
		{"empty key URI", plain, pp, allOuts(3, &KeyTag{Method: "AES-128"}), nil, "segment 0: key URI"},
		{"bad IV", plain, pp, allOuts(3, &KeyTag{Method: "AES-128", URI: "k", IV: "0x12"}), nil, "is not 0x followed by 32 hex digits"},
		{"bad method", plain, pp, allOuts(3, &KeyTag{Method: "AES-128,URI=x", URI: "k"}), nil, "invalid key METHOD"},
		{"NONE with URI", plain, pp, allOuts(3, &KeyTag{Method: "NONE", URI: "k"}), nil, "METHOD=NONE with a URI or IV"},
		{"range without source range", plain, pp, []SegmentOut{{}, {ByteRange: r}, {}}, nil, "segment 1: new byte range for a source without one"},
		{"bad range", media, pm, []SegmentOut{{ByteRange: &ByteRange{0, 0}}, {}, {}}, nil, "invalid byte range 0@0"},
		{"map range without source range", readTD(t, "b/index.m3u8"), mustParse(t, readTD(t, "b/index.m3u8")), make([]SegmentOut, 3), []MapOut{{ByteRange: r}}, "map 0: new byte range"},
		{"encrypted map without IV", media, pm, make([]SegmentOut, 3), []MapOut{{Key: k1}}, "map 0: an encrypted init section needs an IV"},
		{"stale implicit offset", noOff, mustParse(t, noOff), []SegmentOut{{ByteRange: &ByteRange{16, 0}}, {}}, nil, "segment 1: its byte range continues segment 0's"},
	} {
		_, err := RewriteMedia(tc.data, tc.p, tc.outs, tc.maps)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
}

var mediaSamples = []string{
	"a/720p/index.m3u8", "a/360p/index.m3u8", "b/index.m3u8", "c/ts.m3u8", "c/fmp4.m3u8",
	"d/multimap.m3u8", "e/audio/index.m3u8", "e/video/index.m3u8", "e/video/index_vtt.m3u8",
	"e/iframes/index.m3u8", "f/fmp4_crlf.m3u8",
}

// TestRewriteAllSamples rewrites every sample several ways and checks that
// every line survives, each segment and map plays with the key asked, and
// both Parse and grafov/m3u8 read the output.
func TestRewriteAllSamples(t *testing.T) {
	for _, name := range mediaSamples {
		data := readTD(t, name)
		p := mustParse(t, data)
		n := len(p.Segments)
		encMaps := make([]MapOut, len(p.Maps))
		for i := range encMaps {
			encMaps[i].Key = k2
		}
		for i, c := range []struct {
			outs []SegmentOut
			maps []MapOut
		}{
			{allOuts(n, k1), nil}, {allOuts(n, k2), encMaps}, {mixedOuts(n), nil}, {mixedOuts(n), encMaps}, {make([]SegmentOut, n), encMaps},
		} {
			t.Run(fmt.Sprintf("%s/%d", name, i), func(t *testing.T) {
				out, err := RewriteMedia(data, p, c.outs, c.maps)
				if err != nil {
					t.Fatal(err)
				}
				checkKeepsLines(t, data, out)
				checkKeys(t, out, c.outs, c.maps, len(p.Maps))
				q, err := Parse(out)
				if err != nil {
					t.Fatalf("Parse(output): %v", err)
				}
				if len(q.Segments) != n || len(q.Maps) != len(p.Maps) || q.Encrypted != needsKey(c.outs, c.maps) {
					t.Fatalf("output parses to %d segments / %d maps, Encrypted %v", len(q.Segments), len(q.Maps), q.Encrypted)
				}
				grafovReads(t, out, n)
			})
		}
	}
}

func needsKey(outs []SegmentOut, maps []MapOut) bool {
	for _, o := range outs {
		if o.Key != nil {
			return true
		}
	}
	for _, m := range maps {
		if m.Key != nil {
			return true
		}
	}
	return false
}

// TestRewriteURIs: an I-frame playlist's segments can be moved to another
// file (new URI and range); other lines stay, and a new URI without a new
// range, or one that is not a URI line, is refused.
func TestRewriteURIs(t *testing.T) {
	data := []byte("#EXTM3U\n#EXT-X-I-FRAMES-ONLY\n#EXTINF:1,\n#EXT-X-BYTERANGE:100@376\nv/seg0.ts\n" +
		"#EXTINF:1,\n#EXT-X-BYTERANGE:50\nv/seg0.ts\n#EXT-X-ENDLIST\n")
	p := mustParse(t, data)
	outs := []SegmentOut{
		{Key: k1, ByteRange: &ByteRange{112, 376}, URI: "v/seg0.iframes.ts"},
		{Key: k1, ByteRange: &ByteRange{64, 488}, URI: "v/seg0.iframes.ts"},
	}
	out, err := RewriteMedia(data, p, outs, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := "#EXTM3U\n#EXT-X-I-FRAMES-ONLY\n" + wantKeyLine(k1) + "\n#EXTINF:1,\n#EXT-X-BYTERANGE:112@376\nv/seg0.iframes.ts\n" +
		"#EXTINF:1,\n#EXT-X-BYTERANGE:64@488\nv/seg0.iframes.ts\n#EXT-X-ENDLIST\n"
	if string(out) != want {
		t.Errorf("got:\n%s\nwant:\n%s", out, want)
	}
	for _, bad := range []SegmentOut{
		{URI: "v/other.ts"},
		{ByteRange: &ByteRange{16, 0}, URI: "#EXTINF:1,"},
		{ByteRange: &ByteRange{16, 0}, URI: "a\nb.ts"},
		{ByteRange: &ByteRange{16, 0}, URI: " a.ts"},
	} {
		outs := []SegmentOut{bad, {ByteRange: &ByteRange{64, 488}}}
		if _, err := RewriteMedia(data, p, outs, nil); err == nil {
			t.Errorf("new URI %q with range %v accepted", bad.URI, bad.ByteRange)
		}
	}
}
