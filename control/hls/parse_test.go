package hls

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// TestParseTestdata checks what Parse learns from every sample playlist.
func TestParseTestdata(t *testing.T) {
	type want struct {
		master              bool
		segs, maps, version int
		ended, iframes      bool
		typ                 string
	}
	for name, w := range map[string]want{
		"a/master.m3u8":          {master: true, version: 3},
		"a/720p/index.m3u8":      {segs: 3, version: 3, ended: true, typ: "VOD"},
		"a/360p/index.m3u8":      {segs: 3, version: 3, ended: true, typ: "VOD"},
		"b/index.m3u8":           {segs: 3, maps: 1, version: 7, ended: true, typ: "VOD"},
		"c/ts.m3u8":              {segs: 3, version: 4, ended: true, typ: "VOD"},
		"c/fmp4.m3u8":            {segs: 3, maps: 1, version: 7, ended: true, typ: "VOD"},
		"d/multimap.m3u8":        {segs: 5, maps: 2, version: 7, ended: true, typ: "VOD"},
		"e/master.m3u8":          {master: true, version: 3},
		"e/master_iframes.m3u8":  {master: true, version: 3},
		"e/audio/index.m3u8":     {segs: 4, version: 3, ended: true, typ: "VOD"},
		"e/video/index.m3u8":     {segs: 3, version: 3, ended: true, typ: "VOD"},
		"e/video/index_vtt.m3u8": {segs: 3, version: 3, ended: true},
		"e/iframes/index.m3u8":   {segs: 6, version: 4, ended: true, iframes: true, typ: "VOD"},
		"f/fmp4_crlf.m3u8":       {segs: 3, maps: 1, version: 7, ended: true, typ: "VOD"},
		"f/master_crlf.m3u8":     {master: true, version: 3},
	} {
		p := mustParse(t, readTD(t, name))
		got := want{p.Master, len(p.Segments), len(p.Maps), p.Version, p.Ended, p.IFramesOnly, p.PlaylistType}
		if got != w {
			t.Errorf("%s: got %+v, want %+v", name, got, w)
		}
		if p.Encrypted {
			t.Errorf("%s: Encrypted", name)
		}
	}
}

func TestMasterRefs(t *testing.T) {
	for name, want := range map[string][]string{
		"a/master.m3u8":      {"720p/index.m3u8", "360p/index.m3u8"},
		"f/master_crlf.m3u8": {"720p/index.m3u8", "360p/index.m3u8"},
		// audio/index.m3u8 is both an EXT-X-MEDIA and a variant: listed once.
		"e/master.m3u8":         {"audio/index.m3u8", "video/index_vtt.m3u8", "video/index.m3u8"},
		"e/master_iframes.m3u8": {"audio/index.m3u8", "video/index_vtt.m3u8", "video/index.m3u8", "iframes/index.m3u8"},
	} {
		p := mustParse(t, readTD(t, name))
		if !reflect.DeepEqual(p.Refs, want) {
			t.Errorf("%s: Refs %q, want %q", name, p.Refs, want)
		}
		if p.Segments != nil || p.Maps != nil {
			t.Errorf("%s: master has segments or maps", name)
		}
	}
	// Every referenced playlist of the samples is in the samples, and parses.
	for _, ref := range mustParse(t, readTD(t, "e/master_iframes.m3u8")).Refs {
		key, err := ResolveURI("e/master_iframes.m3u8", ref)
		if err != nil {
			t.Fatal(err)
		}
		if p := mustParse(t, readTD(t, key)); p.Master {
			t.Errorf("%s is a master", key)
		}
	}
}

func TestSegmentsMultimap(t *testing.T) {
	p := mustParse(t, readTD(t, "d/multimap.m3u8"))
	want := []Segment{
		{URI: "part1/seg0.m4s", Duration: 4, Start: 0, SeqNo: 100, Map: 0},
		{URI: "part1/seg1.m4s", Duration: 3.5, Start: 4, SeqNo: 101, Map: 0},
		{URI: "part2/all.mp4", Duration: 4, Start: 7.5, SeqNo: 102, Map: 1, Discontinuity: true,
			ByteRange: &ByteRange{Len: 10000, Off: 800}},
		{URI: "part2/all.mp4", Duration: 2.5, Start: 11.5, SeqNo: 103, Map: 1,
			ByteRange: &ByteRange{Len: 12000, Off: 10800}},
		{URI: "part2/all%20mp4/seg%2Cx.m4s", Duration: 1.25, Start: 14, SeqNo: 104, Map: 1},
	}
	if !reflect.DeepEqual(p.Segments, want) {
		t.Errorf("segments:\n got %+v\nwant %+v", p.Segments, want)
	}
	wantMaps := []Map{{URI: "part1/init.mp4"}, {URI: "part2/all.mp4", ByteRange: &ByteRange{Len: 800, Off: 0}}}
	if !reflect.DeepEqual(p.Maps, wantMaps) {
		t.Errorf("maps: got %+v, want %+v", p.Maps, wantMaps)
	}
}

func TestSegmentsStartSeqNo(t *testing.T) {
	p := mustParse(t, readTD(t, "e/audio/index.m3u8"))
	starts := []float64{0, 2.020133, 2.020133 + 1.996922, 2.020133 + 1.996922 + 1.996911}
	for i, s := range p.Segments {
		if s.SeqNo != int64(i) || s.Start != starts[i] || s.Map != -1 || s.ByteRange != nil {
			t.Errorf("segment %d: %+v, want SeqNo %d Start %v", i, s, i, starts[i])
		}
	}
	p = mustParse(t, readTD(t, "c/fmp4.m3u8"))
	offs := []int64{1354, 30009, 58586}
	for i, s := range p.Segments {
		if s.ByteRange == nil || s.ByteRange.Off != offs[i] || s.Start != float64(2*i) || s.Map != 0 {
			t.Errorf("segment %d: %+v", i, s)
		}
	}
}

func TestCRLF(t *testing.T) {
	for crlf, lf := range map[string]string{"f/fmp4_crlf.m3u8": "c/fmp4.m3u8", "f/master_crlf.m3u8": "a/master.m3u8"} {
		c, l := readTD(t, crlf), readTD(t, lf)
		if !bytes.Contains(c, []byte("\r\n")) {
			t.Fatalf("%s lost its CRLFs (git autocrlf?)", crlf)
		}
		if pc, pl := mustParse(t, c), mustParse(t, l); !reflect.DeepEqual(pc, pl) {
			t.Errorf("%s parses differently from %s", crlf, lf)
		}
	}
	c, l := readTD(t, "f/fmp4_crlf.m3u8"), readTD(t, "c/fmp4.m3u8")
	outs := allOuts(3, k2)
	oc, err1 := RewriteMedia(c, mustParse(t, c), outs, nil)
	ol, err2 := RewriteMedia(l, mustParse(t, l), outs, nil)
	if err1 != nil || err2 != nil || !bytes.Equal(oc, ol) {
		t.Errorf("CRLF rewrite differs: %v %v\n%s\n%s", err1, err2, oc, ol)
	}
}

// TestParseErrors checks messages and line numbers.
func TestParseErrors(t *testing.T) {
	const h = "#EXTM3U\n"
	for _, tc := range []struct{ in, want string }{
		{"", "not an HLS playlist: first line must be #EXTM3U"},
		{"#EXTINF:1,\na.ts\n", "not an HLS playlist: first line must be #EXTM3U"},
		{"\uFEFF#EXTM3U\n", "not an HLS playlist: byte order mark before #EXTM3U (forbidden by RFC 8216 4.1)"},
		{h, "media playlist has no segments"},
		{h + "#EXT-X-TARGETDURATION:2\n#EXT-X-ENDLIST\n", "media playlist has no segments"},
		{h + "#EXTINF:2,\na.ts\n#EXTINF:2,\n", "line 4: EXTINF without a segment URI"},
		{h + "#EXTINF:2,\na.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:2,\n#EXT-X-ENDLIST\n", "line 4: EXT-X-DISCONTINUITY without a segment URI"},
		{h + "#EXTINF:2,\na.ts\n#EXT-X-MAP:URI=\"i.mp4\"\n", "line 4: EXT-X-MAP without a segment after it"},
		{h + "a.ts\n", "line 2: segment URI \"a.ts\" without EXTINF"},
		{h + "#EXT-X-BYTERANGE:10@0\na.ts\n", "line 3: segment URI \"a.ts\" without EXTINF"},
		{h + "#EXTINF:-1,\na.ts\n", "line 2: EXTINF duration \"-1\" is not a non-negative decimal number"},
		{h + "#EXTINF:NaN,\na.ts\n", "line 2: EXTINF duration \"NaN\" is not a non-negative decimal number"},
		{h + "#EXTINF:1e3,\na.ts\n", "line 2: EXTINF duration \"1e3\" is not a non-negative decimal number"},
		{h + "#EXTINF:.,\na.ts\n", "line 2: EXTINF duration \".\" is not a non-negative decimal number"},
		{h + "#EXTINF:" + strings.Repeat("9", 400) + "\na.ts\n", "line 2: EXTINF duration \"" + strings.Repeat("9", 400) + "\" is not a non-negative decimal number"},
		{h + "#EXTINF:1,\n#EXTINF:1,\na.ts\n", "line 3: EXTINF given twice for one segment (first at line 2)"},
		{h + "#EXTINF:1,\n#EXT-X-BYTERANGE:10\na.ts\n", "line 3: EXT-X-BYTERANGE without @offset must follow a byte range of the same URI \"a.ts\""},
		{h + "#EXTINF:1,\n#EXT-X-BYTERANGE:10@0\na.ts\n#EXTINF:1,\n#EXT-X-BYTERANGE:10\nb.ts\n", "line 6: EXT-X-BYTERANGE without @offset must follow a byte range of the same URI \"b.ts\""},
		{h + "#EXTINF:1,\na.ts\n#EXTINF:1,\n#EXT-X-BYTERANGE:10\na.ts\n", "line 5: EXT-X-BYTERANGE without @offset must follow a byte range of the same URI \"a.ts\""},
		{h + "#EXTINF:1,\n#EXT-X-BYTERANGE:10@x\na.ts\n", "line 3: EXT-X-BYTERANGE: malformed byte range \"10@x\": offset \"x\" is not a decimal integer"},
		{h + "#EXTINF:1,\n#EXT-X-BYTERANGE:-5@0\na.ts\n", "line 3: EXT-X-BYTERANGE: malformed byte range \"-5@0\": length \"-5\" is not a decimal integer"},
		{h + "#EXTINF:1,\n#EXT-X-BYTERANGE:0@0\na.ts\n", "line 3: EXT-X-BYTERANGE: malformed byte range \"0@0\": empty range"},
		{h + "#EXTINF:1,\n#EXT-X-BYTERANGE:2@9223372036854775807\na.ts\n", "line 3: EXT-X-BYTERANGE: byte range \"2@9223372036854775807\" ends beyond 2^63"},
		{h + "#EXT-X-MAP:URI=\"i.mp4\",BYTERANGE=\"1@\"\n#EXTINF:1,\na.ts\n", "line 2: EXT-X-MAP BYTERANGE: malformed byte range \"1@\": offset \"\" is not a decimal integer"},
		{h + "#EXT-X-MAP:BYTERANGE=\"1@0\"\n#EXTINF:1,\na.ts\n", "line 2: EXT-X-MAP without a quoted URI"},
		{h + "#EXT-X-MAP:URI=\"i.mp4\n#EXTINF:1,\na.ts\n", "line 2: EXT-X-MAP: attribute URI: unterminated quoted string"},
		{h + "#EXT-X-MAP:URI=\"i.mp4\",URI=\"j.mp4\"\n#EXTINF:1,\na.ts\n", "line 2: EXT-X-MAP: attribute URI given twice"},
		{h + "#EXT-X-KEY:URI=\"k\"\n#EXTINF:1,\na.ts\n", "line 2: EXT-X-KEY: missing METHOD"},
		{h + "#EXT-X-VERSION:3\n#EXT-X-VERSION:4\n", "line 3: EXT-X-VERSION given twice (first at line 2)"},
		{h + "#EXTINF:1,\na.ts\n#EXT-X-MEDIA-SEQUENCE:3\n", "line 4: EXT-X-MEDIA-SEQUENCE after the first segment"},
		{h + "#EXT-X-MEDIA-SEQUENCE:-1\n", "line 2: EXT-X-MEDIA-SEQUENCE \"-1\" is not a decimal integer in range"},
		{h + "#EXT-X-PLAYLIST-TYPE:LIVE\n", "line 2: EXT-X-PLAYLIST-TYPE \"LIVE\" is neither VOD nor EVENT"},
		{h + "#EXT-X-TARGETDURATION:2.5\n", "line 2: EXT-X-TARGETDURATION: \"2.5\" is not a decimal integer"},
		{h + "#EXT-X-PART:DURATION=1,URI=\"p.mp4\"\n", "line 2: EXT-X-PART (low-latency HLS) is not supported"},
		{h + "#EXT-X-DEFINE:NAME=\"a\",VALUE=\"b\"\n", "line 2: EXT-X-DEFINE (variable substitution) is not supported"},
		{h + "#EXTINF:1,\na.ts\n#EXTM3U\n", "line 4: #EXTM3U again (concatenated playlists?)"},
		{h + "#EXTINF:1,\na\x01.ts\n", "line 3: forbidden character U+0001"},
		{h + "#EXTINF:1,\na\rb.ts\n", "line 3: forbidden character U+000D"},
		{h + "#EXTINF:1,\na\u2028b.ts\n", "line 3: forbidden character U+2028"},
		{h + "#EXTINF:1,\na\u00a0b.ts\n", "line 3: forbidden character U+00A0"},
		{h + "#EXTINF:1,\na\tb.ts\n", "line 3: forbidden character U+0009"},
		{h + "#EXTINF:1,\n a.ts\n", "line 3: URI \" a.ts\" has leading or trailing white space"},
		{h + "#EXTINF:1,\xff\na.ts\n", "line 2: not valid UTF-8"},
		// master playlists
		{h + "#EXT-X-STREAM-INF:BANDWIDTH=1\n", "line 2: EXT-X-STREAM-INF without a URI"},
		{h + "#EXT-X-STREAM-INF:BANDWIDTH=1\n# c\n\n#EXT-X-STREAM-INF:BANDWIDTH=2\nb.m3u8\n", "line 2: EXT-X-STREAM-INF without a URI on the next line"},
		{h + "#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8\nb.m3u8\n", "line 4: URI \"b.m3u8\" without EXT-X-STREAM-INF"},
		{h + "#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8\n#EXTINF:1,\n", "line 4: EXTINF mixes master and media playlist tags (EXT-X-STREAM-INF at line 2)"},
		{h + "#EXTINF:1,\na.ts\n#EXT-X-MEDIA:TYPE=AUDIO,URI=\"x\"\n", "line 4: EXT-X-MEDIA mixes master and media playlist tags (EXTINF at line 2)"},
		{h + "#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1\n", "line 2: EXT-X-I-FRAME-STREAM-INF without a quoted URI"},
		{h + "#EXT-X-MEDIA:TYPE=AUDIO,URI=x.m3u8\n", "line 2: EXT-X-MEDIA without a quoted URI"},
		{h + "#EXT-X-MEDIA:TYPE=CLOSED-CAPTIONS,GROUP-ID=\"cc\",NAME=\"a\",INSTREAM-ID=\"CC1\"\n", "master playlist references no playlists"},
	} {
		_, err := Parse([]byte(tc.in))
		if err == nil || err.Error() != tc.want {
			t.Errorf("Parse(%q):\n got %v\nwant %s", tc.in, err, tc.want)
			continue
		}
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Errorf("Parse(%q): %T is not a *ParseError", tc.in, err)
		}
	}
}

func TestParseAccepts(t *testing.T) {
	const h = "#EXTM3U\n"
	for _, in := range []string{
		h + "#EXTINF:10\na.ts",                                            // no comma, no final newline
		h + "#EXTINF:10,\na.ts\n#EXTINF:5,\nb.ts\n",                       // live: no ENDLIST
		h + "#EXT-X-KEY:METHOD=NONE\n#EXTINF:1,\na.ts\n",                  // explicit clear
		h + "#EXT-X-FOO:bar\n# just a comment\n\n   \n#EXTINF:1,\na.ts\n", // unknown tag, comment, blank lines
		h + "#EXT-X-MAP:URI=\"i.mp4\",BYTERANGE=\"1@0\"\n#EXTINF:1,\n#EXT-X-BYTERANGE:10@1\na.ts\n#EXTINF:1,\n#EXT-X-BYTERANGE:10\na.ts\n",
		h + "#EXT-X-STREAM-INF:BANDWIDTH=1\n\n# c\na.m3u8\n", // blank/comment before the variant URI
	} {
		if _, err := Parse([]byte(in)); err != nil {
			t.Errorf("Parse(%q): %v", in, err)
		}
	}
	p := mustParse(t, []byte(h+"#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"k\"\n#EXTINF:1,\na.ts\n"))
	if !p.Encrypted {
		t.Error("EXT-X-KEY METHOD=SAMPLE-AES: not Encrypted")
	}
	p = mustParse(t, []byte(h+"#EXT-X-MAP:URI=\"i.mp4\",BYTERANGE=\"700\"\n#EXTINF:1,\na.ts\n"))
	if r := p.Maps[0].ByteRange; r == nil || *r != (ByteRange{700, 0}) {
		t.Errorf("EXT-X-MAP BYTERANGE without @o: %+v", r)
	}
	p = mustParse(t, []byte(h+"#EXTINF:1,\na.ts\n#EXT-X-ENDLIST \n"))
	if !p.Ended || p.Version != 0 || p.PlaylistType != "" {
		t.Errorf("minimal playlist: %+v", p)
	}
}

func TestParseLimits(t *testing.T) {
	big := make([]byte, MaxBytes+1)
	if _, err := Parse(big); err == nil || !strings.Contains(err.Error(), "playlist too large") {
		t.Errorf("oversize: %v", err)
	}
	many := []byte("#EXTM3U\n" + strings.Repeat("\n", MaxLines))
	if _, err := Parse(many); err == nil || !strings.Contains(err.Error(), "playlist too long") {
		t.Errorf("too many lines: %v", err)
	}
	// Exactly MaxLines lines is fine.
	ok := []byte("#EXTM3U\n#EXTINF:1,\na.ts\n" + strings.Repeat("\n", MaxLines-3))
	if _, err := Parse(ok); err != nil {
		t.Errorf("MaxLines lines: %v", err)
	}
}
