package hls

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// RewriteMedia returns the media playlist data, whose parse is p, as it must
// be served once segments are encrypted as outs says (one per segment) and
// init sections as maps says (one per EXT-X-MAP, or nil: unchanged, clear).
//
// Every source line is kept verbatim (line endings become "\n"), except:
//
//   - An EXT-X-KEY line is inserted wherever the key in force must change.
//     For a segment it goes immediately before the first of its segment tags
//     (EXTINF, EXT-X-BYTERANGE, EXT-X-DISCONTINUITY, EXT-X-PROGRAM-DATE-TIME,
//     EXT-X-GAP, EXT-X-BITRATE) that follows the previous URI and any
//     EXT-X-MAP or EXT-X-KEY of the source; with none, right before the URI.
//     So a segment's key comes AFTER an EXT-X-MAP preceding it: a player
//     decrypts an init section with the key in force at its EXT-X-MAP
//     (RFC 8216 4.3.2.5), so for each EXT-X-MAP the key its MapOut names
//     (none by default) is put in force just before it, and a clear init
//     section after encrypted segments gets "#EXT-X-KEY:METHOD=NONE".
//     A clear segment after an encrypted one gets the same.
//   - EXT-X-BYTERANGE lines and EXT-X-MAP BYTERANGE attributes are replaced
//     where outs or maps give a new range (written len@off).
//   - A segment's URI line is replaced where its SegmentOut gives a URI.
//   - If an IV is written and the version is below 2, EXT-X-VERSION becomes 2
//     (inserted after #EXTM3U if absent).
//
// Source EXT-X-KEY lines with METHOD=NONE are kept and accounted for; a
// source that is already encrypted is refused, as is a new range for a
// segment or map that has none, and a key URI with a quote or line break.
func RewriteMedia(data []byte, p *Playlist, outs []SegmentOut, maps []MapOut) ([]byte, error) {
	src, lay, err := checkRewrite(data, p, outs, maps)
	if err != nil {
		return nil, err
	}
	w := &rewriter{lay: lay, outs: outs, maps: maps}
	w.version = needVersion2(outs, maps) && src.Version < 2
	w.addVersion = w.version && src.Version == 0
	w.buf.Grow(len(data) + len(data)/4 + 256)
	for i, ln := range lay.lines {
		w.line(i, ln)
	}
	return w.buf.Bytes(), nil
}

// checkRewrite re-parses data (p is trusted only to match it) and
// validates outs and maps against it.
func checkRewrite(data []byte, p *Playlist, outs []SegmentOut, maps []MapOut) (*Playlist, *layout, error) {
	if p == nil || p.Master {
		return nil, nil, fmt.Errorf("hls: RewriteMedia needs a media playlist")
	}
	src, lay, err := parse(data)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case src.Master || len(src.Segments) != len(p.Segments) || len(src.Maps) != len(p.Maps):
		return nil, nil, fmt.Errorf("hls: RewriteMedia: playlist does not match its data")
	case src.Encrypted:
		return nil, nil, fmt.Errorf("hls: RewriteMedia: source playlist is already encrypted")
	case len(outs) != len(src.Segments):
		return nil, nil, fmt.Errorf("hls: RewriteMedia: %d outs for %d segments", len(outs), len(src.Segments))
	case maps != nil && len(maps) != len(src.Maps):
		return nil, nil, fmt.Errorf("hls: RewriteMedia: %d map outs for %d EXT-X-MAPs", len(maps), len(src.Maps))
	}
	if err := checkOuts(src, lay, outs); err != nil {
		return nil, nil, err
	}
	return src, lay, checkMaps(lay, maps)
}

// checkOuts validates keys and ranges. A source range without @o continues
// the previous segment's, so it cannot stay as written once that one moved.
func checkOuts(src *Playlist, lay *layout, outs []SegmentOut) error {
	for i, o := range outs {
		if i > 0 && lay.noOff[i] && o.ByteRange == nil && outs[i-1].ByteRange != nil {
			return fmt.Errorf("hls: segment %d: its byte range continues segment %d's, which changes: give it a new range too", i, i-1)
		}
		if err := checkKey(o.Key); err != nil {
			return fmt.Errorf("hls: segment %d: %v", i, err)
		}
		if err := checkNewRange(o.ByteRange, src.Segments[i].ByteRange != nil); err != nil {
			return fmt.Errorf("hls: segment %d: %v", i, err)
		}
		if err := checkNewURI(o); err != nil {
			return fmt.Errorf("hls: segment %d: %v", i, err)
		}
	}
	return nil
}

// checkNewURI refuses a new URI that would not survive as one URI line, or
// that moves a segment without giving its byte range a new place: the old
// range means nothing in another file.
func checkNewURI(o SegmentOut) error {
	switch {
	case o.URI == "":
		return nil
	case o.ByteRange == nil:
		return fmt.Errorf("new URI %q without a new byte range", o.URI)
	case o.URI[0] == '#' || checkChars(o.URI, true) != nil:
		return fmt.Errorf("new URI %q is not writable as a URI line", o.URI)
	}
	return nil
}

func checkMaps(lay *layout, maps []MapOut) error {
	for i, m := range maps {
		if err := checkKey(m.Key); err != nil {
			return fmt.Errorf("hls: map %d: %v", i, err)
		}
		if k := normKey(m.Key); k != nil && k.IV == "" {
			// RFC 8216 4.3.2.5: no media sequence number to derive it from.
			return fmt.Errorf("hls: map %d: an encrypted init section needs an IV", i)
		}
		if err := checkNewRange(m.ByteRange, lay.maps[i].hasRange); err != nil {
			return fmt.Errorf("hls: map %d: %v", i, err)
		}
	}
	return nil
}

func checkNewRange(r *ByteRange, had bool) error {
	switch {
	case r == nil:
		return nil
	case !had:
		return fmt.Errorf("new byte range for a source without one")
	case r.Len <= 0 || r.Off < 0 || r.Off > math.MaxInt64-r.Len:
		return fmt.Errorf("invalid byte range %d@%d", r.Len, r.Off)
	}
	return nil
}

// checkKey refuses anything that would not survive as one well-formed tag.
func checkKey(k *KeyTag) error {
	if k == nil {
		return nil
	}
	if k.Method == "" || strings.Trim(k.Method, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") != "" {
		return fmt.Errorf("invalid key METHOD %q", k.Method)
	}
	if k.Method == "NONE" {
		if k.URI != "" || k.IV != "" {
			return fmt.Errorf("METHOD=NONE with a URI or IV")
		}
		return nil
	}
	if k.URI == "" || strings.ContainsAny(k.URI, "\"\r\n") || checkChars(k.URI, true) != nil {
		return fmt.Errorf("key URI %q is empty or not writable as a quoted string", k.URI)
	}
	if k.IV != "" && !isIV(k.IV) {
		return fmt.Errorf("key IV %q is not 0x followed by 32 hex digits", k.IV)
	}
	return nil
}

func isIV(s string) bool {
	if len(s) != 34 || s[0] != '0' || s[1] != 'x' && s[1] != 'X' {
		return false
	}
	return strings.Trim(s[2:], "0123456789abcdefABCDEF") == ""
}

// normKey maps "clear" to nil so keys compare simply.
func normKey(k *KeyTag) *KeyTag {
	if k == nil || k.Method == "NONE" {
		return nil
	}
	return k
}

func sameKey(a, b *KeyTag) bool {
	a, b = normKey(a), normKey(b)
	return a == b || a != nil && b != nil && *a == *b
}

func needVersion2(outs []SegmentOut, maps []MapOut) bool {
	for _, o := range outs {
		if k := normKey(o.Key); k != nil && k.IV != "" {
			return true
		}
	}
	for _, m := range maps {
		if k := normKey(m.Key); k != nil && k.IV != "" {
			return true
		}
	}
	return false
}

// rewriter writes the output line by line, tracking the key a player
// would have in force.
type rewriter struct {
	lay        *layout
	outs       []SegmentOut
	maps       []MapOut
	buf        bytes.Buffer
	inForce    *KeyTag
	next       int // next segment whose key insertion point is ahead
	version    bool
	addVersion bool
}

func (w *rewriter) line(i int, ln string) {
	if w.next < len(w.lay.keyAt) && w.lay.keyAt[w.next] == i {
		w.setKey(w.outs[w.next].Key)
		w.next++
	}
	r := w.lay.roles[i]
	switch r.kind {
	case roleVersion:
		if w.version {
			ln = "#EXT-X-VERSION:2"
		}
	case roleMap:
		ln = w.mapLine(r.idx, ln)
	case roleSrcKey:
		w.inForce = nil // the source can only hold METHOD=NONE here
	case roleRange:
		if br := w.outs[r.idx].ByteRange; br != nil {
			ln = "#EXT-X-BYTERANGE:" + rangeString(br)
		}
	case roleURI:
		if u := w.outs[r.idx].URI; u != "" {
			ln = u
		}
	}
	w.write(ln)
	if i == 0 && w.addVersion {
		w.write("#EXT-X-VERSION:2")
	}
}

// mapLine puts the init section's key in force and rewrites its range.
func (w *rewriter) mapLine(j int, ln string) string {
	if w.maps == nil {
		w.setKey(nil)
		return ln
	}
	w.setKey(w.maps[j].Key)
	br, loc := w.maps[j].ByteRange, w.lay.maps[j]
	if br == nil {
		return ln
	}
	v := rangeString(br)
	if !loc.quoted {
		v = `"` + v + `"`
	}
	return ln[:loc.start] + v + ln[loc.end:]
}

func (w *rewriter) setKey(k *KeyTag) {
	if sameKey(k, w.inForce) {
		return
	}
	w.inForce = normKey(k)
	w.write(keyLine(w.inForce))
}

func keyLine(k *KeyTag) string {
	if k == nil {
		return "#EXT-X-KEY:METHOD=NONE"
	}
	s := "#EXT-X-KEY:METHOD=" + k.Method + `,URI="` + k.URI + `"`
	if k.IV != "" {
		s += ",IV=" + k.IV
	}
	return s
}

func rangeString(r *ByteRange) string {
	return strconv.FormatInt(r.Len, 10) + "@" + strconv.FormatInt(r.Off, 10)
}

func (w *rewriter) write(s string) {
	w.buf.WriteString(s)
	w.buf.WriteByte('\n')
}
