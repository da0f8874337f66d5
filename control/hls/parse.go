package hls

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode"
	"unicode/utf8"
)

// roleKind tells RewriteMedia what a source line is.
type roleKind uint8

const (
	roleOther   roleKind = iota
	roleVersion          // EXT-X-VERSION
	roleMap              // EXT-X-MAP number idx
	roleSrcKey           // an EXT-X-KEY of the source (METHOD=NONE if rewritable)
	roleRange            // EXT-X-BYTERANGE of segment idx
	roleURI              // the URI line of segment idx
)

type role struct {
	kind roleKind
	idx  int
}

// mapLoc locates an EXT-X-MAP's BYTERANGE value inside its line.
type mapLoc struct {
	hasRange   bool
	start, end int // value span, quotes excluded
	quoted     bool
}

// layout is where things are in the source, for RewriteMedia.
type layout struct {
	lines []string // without line terminators
	roles map[int]role
	keyAt []int  // per segment: line index before which its EXT-X-KEY goes
	noOff []bool // per segment: its EXT-X-BYTERANGE omits @o
	maps  []mapLoc
}

type playlistKind uint8

const (
	kindUnknown playlistKind = iota
	kindMaster
	kindMedia
)

// pendingSeg collects the tags that apply to the next segment URI.
type pendingSeg struct {
	extinf   int // 1-based line of the EXTINF, 0 if none yet
	dur      float64
	rng      *ByteRange
	rngLine  int
	rngNoOff bool
	disc     bool
	gap      bool
	tagLine  int // first segment tag, for "tag without a URI" errors
	tagName  string
}

type parser struct {
	pl        *Playlist
	lay       *layout
	kind      playlistKind
	kindLine  int
	kindTag   string
	seq       int64
	seqLine   int
	verLine   int
	pend      pendingSeg
	block     int // index of the first segment tag after the last URI/MAP/KEY, -1 if none
	curMap    int
	mapLine   int // 1-based line of an EXT-X-MAP no segment has followed yet
	start     float64
	streamInf int // 1-based line of an EXT-X-STREAM-INF waiting for its URI
	seen      map[string]bool
}

// Parse parses and validates a playlist. Errors are *ParseError naming the
// problem and the 1-based line ("line 7: EXTINF without a segment URI").
//
// Beyond RFC 8216 syntax it refuses what could let a segment escape
// encryption or be read differently by us and by a player: LL-HLS parts
// and preload hints (media URIs we would not see), EXT-X-DEFINE variable
// substitution (URIs we would resolve wrongly), and control characters or
// exotic white space (some players split lines on them).
//
// A byte range without @o continues the previous segment's range, which must
// exist and name the same URI (RFC 8216 4.3.2.2); an EXT-X-MAP BYTERANGE
// without @o starts at 0 (as hls.js and ffmpeg read it).
func Parse(data []byte) (*Playlist, error) {
	pl, _, err := parse(data)
	return pl, err
}

func parse(data []byte) (*Playlist, *layout, error) {
	lines, err := splitLines(data)
	if err != nil {
		return nil, nil, err
	}
	p := &parser{
		pl:     &Playlist{},
		lay:    &layout{lines: lines, roles: map[int]role{}},
		block:  -1,
		curMap: -1,
		seen:   map[string]bool{},
	}
	for i := 1; i < len(lines); i++ {
		if err := p.line(i, lines[i]); err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				pe = &ParseError{Line: i + 1, Msg: err.Error()}
			}
			return nil, nil, pe
		}
	}
	if err := p.finish(); err != nil {
		return nil, nil, err
	}
	return p.pl, p.lay, nil
}

// splitLines enforces the size limits and the #EXTM3U header, and splits
// on LF, dropping a CR before it (CRLF input).
func splitLines(data []byte) ([]string, error) {
	if len(data) > MaxBytes {
		return nil, &ParseError{Msg: fmt.Sprintf("playlist too large: %d bytes (limit %d)", len(data), MaxBytes)}
	}
	if n := bytes.Count(data, []byte{'\n'}); n > MaxLines || n == MaxLines && data[len(data)-1] != '\n' {
		return nil, &ParseError{Msg: fmt.Sprintf("playlist too long: more than %d lines", MaxLines)}
	}
	if bytes.HasPrefix(data, []byte("\uFEFF")) {
		return nil, &ParseError{Msg: "not an HLS playlist: byte order mark before #EXTM3U (forbidden by RFC 8216 4.1)"}
	}
	lines := strings.Split(string(data), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	for i, ln := range lines {
		lines[i] = strings.TrimSuffix(ln, "\r")
	}
	if len(lines) == 0 || strings.TrimRight(lines[0], " \t") != "#EXTM3U" {
		return nil, &ParseError{Msg: "not an HLS playlist: first line must be #EXTM3U"}
	}
	return lines, nil
}

// line handles source line i (0-based).
func (p *parser) line(i int, ln string) error {
	isURI := strings.TrimSpace(ln) != "" && ln[0] != '#'
	if err := checkChars(ln, isURI); err != nil {
		return err
	}
	switch {
	case isURI:
		return p.uri(i, ln)
	case strings.HasPrefix(ln, "#EXT"):
		return p.tag(i, ln)
	}
	return nil // blank line or comment
}

// checkChars refuses bytes that parsers disagree on: invalid UTF-8, control
// characters, a BOM, and white space other than space (and tab in tags).
// hls.js for one treats any such white space as the end of a URI.
func checkChars(ln string, isURI bool) error {
	if !utf8.ValidString(ln) {
		return fmt.Errorf("not valid UTF-8")
	}
	if isURI && strings.TrimSpace(ln) != ln {
		return fmt.Errorf("URI %q has leading or trailing white space", ln)
	}
	for _, r := range ln {
		if r == '\t' && !isURI || r == ' ' {
			continue
		}
		if r < 0x20 || r == 0x7f || r == 0xFEFF || unicode.IsSpace(r) || r == 0x2028 || r == 0x2029 {
			return fmt.Errorf("forbidden character U+%04X", r)
		}
	}
	return nil
}

// setKind records that the playlist is a master or a media playlist and
// refuses a mix of both.
func (p *parser) setKind(k playlistKind, i int, tag string) error {
	if p.kind == kindUnknown {
		p.kind, p.kindLine, p.kindTag = k, i+1, tag
		p.pl.Master = k == kindMaster
		return nil
	}
	if p.kind != k {
		return fmt.Errorf("%s mixes master and media playlist tags (%s at line %d)", tag, p.kindTag, p.kindLine)
	}
	return nil
}

// uri handles a URI line: a segment (media) or a variant stream (master).
func (p *parser) uri(i int, uri string) error {
	if p.streamInf != 0 {
		p.streamInf = 0
		p.addRef(uri)
		return nil
	}
	if p.kind == kindMaster {
		return fmt.Errorf("URI %q without EXT-X-STREAM-INF", uri)
	}
	if p.pend.extinf == 0 {
		return fmt.Errorf("segment URI %q without EXTINF", uri)
	}
	return p.segment(i, uri)
}

func (p *parser) addRef(uri string) {
	if !p.seen[uri] {
		p.seen[uri] = true
		p.pl.Refs = append(p.pl.Refs, uri)
	}
}

// segment closes the pending tags into a Segment.
func (p *parser) segment(i int, uri string) error {
	rng, err := p.resolveRange(uri)
	if err != nil {
		return err
	}
	n := len(p.pl.Segments)
	p.pl.Segments = append(p.pl.Segments, Segment{
		URI:           uri,
		Duration:      p.pend.dur,
		Start:         p.start,
		SeqNo:         p.seq + int64(n),
		ByteRange:     rng,
		Map:           p.curMap,
		Discontinuity: p.pend.disc,
		Gap:           p.pend.gap,
	})
	if p.pend.rng != nil {
		p.lay.roles[p.pend.rngLine-1] = role{roleRange, n}
	}
	p.lay.roles[i] = role{roleURI, n}
	keyAt := p.block
	if keyAt < 0 {
		keyAt = i
	}
	p.lay.keyAt = append(p.lay.keyAt, keyAt)
	p.lay.noOff = append(p.lay.noOff, p.pend.rngNoOff)
	p.start += p.pend.dur
	p.pend, p.block, p.mapLine = pendingSeg{}, -1, 0
	return nil
}

// resolveRange fills in an omitted @o: the range continues the previous
// segment, which must be a sub-range of the same URI (RFC 8216 4.3.2.2).
func (p *parser) resolveRange(uri string) (*ByteRange, error) {
	r := p.pend.rng
	if r == nil || !p.pend.rngNoOff {
		return r, nil
	}
	segs := p.pl.Segments
	if len(segs) == 0 || segs[len(segs)-1].URI != uri || segs[len(segs)-1].ByteRange == nil {
		return nil, &ParseError{Line: p.pend.rngLine,
			Msg: fmt.Sprintf("EXT-X-BYTERANGE without @offset must follow a byte range of the same URI %q", uri)}
	}
	prev := segs[len(segs)-1].ByteRange
	if prev.Off+prev.Len > math.MaxInt64-r.Len {
		return nil, &ParseError{Line: p.pend.rngLine, Msg: "EXT-X-BYTERANGE ends beyond 2^63"}
	}
	return &ByteRange{Len: r.Len, Off: prev.Off + prev.Len}, nil
}

// finish applies the checks that need the whole playlist.
func (p *parser) finish() error {
	if p.kind == kindMaster {
		if p.streamInf != 0 {
			return &ParseError{Line: p.streamInf, Msg: "EXT-X-STREAM-INF without a URI"}
		}
		if len(p.pl.Refs) == 0 {
			return &ParseError{Msg: "master playlist references no playlists"}
		}
		return nil
	}
	if p.pend.tagLine != 0 {
		return &ParseError{Line: p.pend.tagLine, Msg: p.pend.tagName + " without a segment URI"}
	}
	if p.mapLine != 0 {
		return &ParseError{Line: p.mapLine, Msg: "EXT-X-MAP without a segment after it"}
	}
	if len(p.pl.Segments) == 0 {
		return &ParseError{Msg: "media playlist has no segments"}
	}
	return nil
}
