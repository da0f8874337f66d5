package hls

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/grafov/m3u8"
)

func readTD(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", filepath.FromSlash(name)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustParse(t testing.TB, data []byte) *Playlist {
	t.Helper()
	p, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

// srcLines splits like Parse does: LF or CRLF, no trailing empty line.
func srcLines(data []byte) []string {
	s := strings.TrimSuffix(string(data), "\n")
	if s == "" {
		return nil
	}
	ls := strings.Split(s, "\n")
	for i := range ls {
		ls[i] = strings.TrimSuffix(ls[i], "\r")
	}
	return ls
}

var replaceable = []string{"#EXT-X-BYTERANGE:", "#EXT-X-MAP:", "#EXT-X-VERSION:"}

// checkKeepsLines verifies that out is src, in order, with only EXT-X-KEY
// lines (and an EXT-X-VERSION:2) inserted and only BYTERANGE/MAP/VERSION
// lines replaced by lines of the same tag. It also checks the multisets:
// every source line is in the output unless it was replaced.
func checkKeepsLines(t testing.TB, src, out []byte) {
	t.Helper()
	s, o := srcLines(src), srcLines(out)
	if !bytes.HasSuffix(out, []byte("\n")) || bytes.Contains(out, []byte("\r")) {
		t.Fatalf("output not \\n-terminated lines")
	}
	replaced := map[string]int{}
	i := 0
	for j := 0; j < len(o); j++ {
		switch {
		case i < len(s) && o[j] == s[i]:
			i++
		case i < len(s) && sameTag(o[j], s[i]):
			replaced[s[i]]++
			i++
		case strings.HasPrefix(o[j], "#EXT-X-KEY:"), o[j] == "#EXT-X-VERSION:2" && j == 1:
		default:
			t.Fatalf("output line %d %q is neither source line %d %q nor an allowed insertion", j+1, o[j], i+1, at(s, i))
		}
	}
	if i != len(s) {
		t.Fatalf("source line %d %q missing from output", i+1, s[i])
	}
	count := map[string]int{}
	for _, l := range o {
		count[l]++
	}
	for _, l := range s {
		if count[l] > 0 {
			count[l]--
		} else if replaced[l] > 0 {
			replaced[l]--
		} else {
			t.Fatalf("source line %q lost", l)
		}
	}
}

func at(s []string, i int) string {
	if i < len(s) {
		return s[i]
	}
	return "<end>"
}

func sameTag(a, b string) bool {
	for _, p := range replaceable {
		if strings.HasPrefix(a, p) && strings.HasPrefix(b, p) {
			return true
		}
	}
	return false
}

// keysInForce replays out as a player does and returns, for every segment
// and every EXT-X-MAP, the EXT-X-KEY line in force there ("" when none or
// METHOD=NONE).
func keysInForce(out []byte) (segs, maps []string) {
	cur := ""
	for _, l := range srcLines(out) {
		switch {
		case strings.HasPrefix(l, "#EXT-X-KEY:"):
			cur = l
			if m, _ := keyMethod(strings.TrimPrefix(l, "#EXT-X-KEY:")); m == "NONE" {
				cur = ""
			}
		case strings.HasPrefix(l, "#EXT-X-MAP:"):
			maps = append(maps, cur)
		case strings.TrimSpace(l) != "" && l[0] != '#':
			segs = append(segs, cur)
		}
	}
	return segs, maps
}

func wantKeyLine(k *KeyTag) string {
	if k == nil {
		return ""
	}
	return keyLine(k)
}

// checkKeys verifies that each segment and map plays with the key asked.
func checkKeys(t testing.TB, out []byte, outs []SegmentOut, mo []MapOut, nMaps int) {
	t.Helper()
	segs, maps := keysInForce(out)
	if len(segs) != len(outs) || len(maps) != nMaps {
		t.Fatalf("output has %d segments / %d maps, want %d / %d", len(segs), len(maps), len(outs), nMaps)
	}
	for i, o := range outs {
		if segs[i] != wantKeyLine(o.Key) {
			t.Fatalf("segment %d plays with %q, want %q", i, segs[i], wantKeyLine(o.Key))
		}
	}
	for j := range maps {
		var k *KeyTag
		if mo != nil {
			k = mo[j].Key
		}
		if maps[j] != wantKeyLine(k) {
			t.Fatalf("map %d plays with %q, want %q", j, maps[j], wantKeyLine(k))
		}
	}
}

// grafovReads checks that github.com/grafov/m3u8 decodes out as a media
// playlist with n segments.
func grafovReads(t testing.TB, out []byte, n int) {
	t.Helper()
	pl, typ, err := m3u8.DecodeFrom(bytes.NewReader(out), true)
	if err != nil {
		t.Fatalf("grafov/m3u8: %v", err)
	}
	if typ != m3u8.MEDIA {
		t.Fatalf("grafov/m3u8: not a media playlist")
	}
	if got := int(pl.(*m3u8.MediaPlaylist).Count()); got != n {
		t.Fatalf("grafov/m3u8: %d segments, want %d", got, n)
	}
}

var (
	k1 = &KeyTag{Method: "AES-128", URI: "https://keys.example/k1?t=a,b"}
	k2 = &KeyTag{Method: "AES-128", URI: "k2.key", IV: "0x000102030405060708090a0b0c0d0e0f"}
)

// mixedOuts encrypts with k1, k2 and clear in turn.
func mixedOuts(n int) []SegmentOut {
	outs := make([]SegmentOut, n)
	for i := range outs {
		outs[i].Key = []*KeyTag{k1, k1, nil, k2}[i%4]
	}
	return outs
}

func allOuts(n int, k *KeyTag) []SegmentOut {
	outs := make([]SegmentOut, n)
	for i := range outs {
		outs[i].Key = k
	}
	return outs
}
