package hls

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// tag handles a line starting with "#EXT". Unknown tags are accepted and
// left alone: RewriteMedia copies them verbatim.
func (p *parser) tag(i int, ln string) error {
	if p.streamInf != 0 {
		return &ParseError{Line: p.streamInf, Msg: "EXT-X-STREAM-INF without a URI on the next line"}
	}
	name, val, _ := strings.Cut(ln, ":")
	name = strings.TrimRight(name, " \t") // "#EXT-X-ENDLIST " is still ENDLIST
	if ok, err := p.segmentTag(i, name, val); ok {
		return err
	}
	if ok, err := p.mediaTag(i, name, val); ok {
		return err
	}
	if ok, err := p.masterTag(i, name, val); ok {
		return err
	}
	return p.commonTag(i, name, val)
}

// segmentTag handles the tags that apply to the next segment URI. The first
// of them after the previous URI (or EXT-X-MAP / EXT-X-KEY) is where an
// EXT-X-KEY for that segment is inserted.
func (p *parser) segmentTag(i int, name, val string) (bool, error) {
	switch name {
	case "#EXTINF", "#EXT-X-BYTERANGE", "#EXT-X-DISCONTINUITY",
		"#EXT-X-PROGRAM-DATE-TIME", "#EXT-X-GAP", "#EXT-X-BITRATE":
	default:
		return false, nil
	}
	if err := p.setKind(kindMedia, i, name[1:]); err != nil {
		return true, err
	}
	if p.block < 0 {
		p.block = i
	}
	if p.pend.tagLine == 0 {
		p.pend.tagLine, p.pend.tagName = i+1, name[1:]
	}
	switch name {
	case "#EXTINF":
		return true, p.extinf(i, val)
	case "#EXT-X-BYTERANGE":
		return true, p.byteRange(i, val)
	case "#EXT-X-DISCONTINUITY":
		p.pend.disc = true
	case "#EXT-X-GAP":
		p.pend.gap = true
	}
	return true, nil
}

func (p *parser) extinf(i int, val string) error {
	if p.pend.extinf != 0 {
		return fmt.Errorf("EXTINF given twice for one segment (first at line %d)", p.pend.extinf)
	}
	durStr, _, _ := strings.Cut(val, ",")
	d, err := parseDuration(durStr)
	if err != nil {
		return fmt.Errorf("EXTINF %v", err)
	}
	p.pend.extinf, p.pend.dur = i+1, d
	return nil
}

func (p *parser) byteRange(i int, val string) error {
	if p.pend.rng != nil {
		return fmt.Errorf("EXT-X-BYTERANGE given twice for one segment (first at line %d)", p.pend.rngLine)
	}
	r, err := parseRange(val)
	if err != nil && !errors.Is(err, errNoOffset) {
		return fmt.Errorf("EXT-X-BYTERANGE: %v", err)
	}
	p.pend.rng, p.pend.rngLine, p.pend.rngNoOff = &r, i+1, err != nil
	return nil
}

// mediaTag handles the other tags that only appear in media playlists.
func (p *parser) mediaTag(i int, name, val string) (bool, error) {
	switch name {
	case "#EXT-X-MAP", "#EXT-X-KEY", "#EXT-X-MEDIA-SEQUENCE", "#EXT-X-TARGETDURATION",
		"#EXT-X-DISCONTINUITY-SEQUENCE", "#EXT-X-ENDLIST", "#EXT-X-PLAYLIST-TYPE",
		"#EXT-X-I-FRAMES-ONLY", "#EXT-X-DATERANGE", "#EXT-X-SERVER-CONTROL",
		"#EXT-X-PART-INF":
	case "#EXT-X-PART", "#EXT-X-PRELOAD-HINT", "#EXT-X-SKIP", "#EXT-X-RENDITION-REPORT":
		// Their URIs are media (or playlists of parts) we would serve
		// unencrypted or leave dangling.
		return true, fmt.Errorf("%s (low-latency HLS) is not supported", name[1:])
	default:
		return false, nil
	}
	if err := p.setKind(kindMedia, i, name[1:]); err != nil {
		return true, err
	}
	return true, p.mediaTagValue(i, name, val)
}

func (p *parser) mediaTagValue(i int, name, val string) error {
	switch name {
	case "#EXT-X-MAP":
		return p.extMap(i, val)
	case "#EXT-X-KEY":
		return p.extKey(i, val)
	case "#EXT-X-MEDIA-SEQUENCE":
		return p.mediaSequence(i, val)
	case "#EXT-X-TARGETDURATION", "#EXT-X-DISCONTINUITY-SEQUENCE":
		if _, err := parseUint(val); err != nil {
			return fmt.Errorf("%s: %v", name[1:], err)
		}
	case "#EXT-X-ENDLIST":
		p.pl.Ended = true
	case "#EXT-X-I-FRAMES-ONLY":
		p.pl.IFramesOnly = true
	case "#EXT-X-PLAYLIST-TYPE":
		if val != "VOD" && val != "EVENT" {
			return fmt.Errorf("EXT-X-PLAYLIST-TYPE %q is neither VOD nor EVENT", val)
		}
		p.pl.PlaylistType = val
	case "#EXT-X-DATERANGE":
		return p.sideRefs(i, name, val, isDateRangeURI, true)
	}
	return nil
}

// isDateRangeURI reports the EXT-X-DATERANGE attributes holding a URI:
// the interstitials' X-ASSET-URI and X-ASSET-LIST, and any client
// attribute named X-...-URI.
func isDateRangeURI(attr string) bool {
	return attr == "X-ASSET-URI" || attr == "X-ASSET-LIST" || (strings.HasPrefix(attr, "X-") && strings.HasSuffix(attr, "-URI"))
}

// sideRefs records the URI attributes (those isURI accepts) of a tag the
// caller does not follow.
func (p *parser) sideRefs(i int, name, val string, isURI func(string) bool, presentation bool) error {
	as, err := parseAttrs(val)
	if err != nil {
		return fmt.Errorf("%s: %v", name[1:], err)
	}
	for _, a := range as {
		if !isURI(a.Name) {
			continue
		}
		if !a.Quoted || a.Value == "" {
			return fmt.Errorf("%s: %s must be a quoted URI", name[1:], a.Name)
		}
		p.pl.SideRefs = append(p.pl.SideRefs, SideRef{Tag: name[1:], Attr: a.Name, URI: a.Value, Line: i + 1, Presentation: presentation})
	}
	return nil
}

func (p *parser) extMap(i int, val string) error {
	as, err := parseAttrs(val)
	if err != nil {
		return fmt.Errorf("EXT-X-MAP: %v", err)
	}
	u, ok := findAttr(as, "URI")
	if !ok || !u.Quoted || u.Value == "" {
		return fmt.Errorf("EXT-X-MAP without a quoted URI")
	}
	m, loc := Map{URI: u.Value}, mapLoc{}
	if b, ok := findAttr(as, "BYTERANGE"); ok {
		r, err := parseRange(b.Value)
		if err != nil && !errors.Is(err, errNoOffset) {
			return fmt.Errorf("EXT-X-MAP BYTERANGE: %v", err)
		}
		off := len("#EXT-X-MAP:")
		m.ByteRange = &r
		loc.hasRange, loc.start, loc.end, loc.quoted = true, off+b.Start, off+b.End, b.Quoted
	}
	p.curMap = len(p.pl.Maps)
	p.pl.Maps = append(p.pl.Maps, m)
	p.lay.maps = append(p.lay.maps, loc)
	p.lay.roles[i] = role{roleMap, p.curMap}
	p.block, p.mapLine = -1, i+1
	return nil
}

func (p *parser) extKey(i int, val string) error {
	m, err := keyMethod(val)
	if err != nil {
		return fmt.Errorf("EXT-X-KEY: %v", err)
	}
	p.pl.Encrypted = p.pl.Encrypted || m != "NONE"
	p.lay.roles[i] = role{kind: roleSrcKey}
	p.block = -1
	return nil
}

func keyMethod(val string) (string, error) {
	as, err := parseAttrs(val)
	if err != nil {
		return "", err
	}
	m, ok := findAttr(as, "METHOD")
	if !ok || m.Quoted || m.Value == "" {
		return "", fmt.Errorf("missing METHOD")
	}
	return m.Value, nil
}

func (p *parser) mediaSequence(i int, val string) error {
	if p.seqLine != 0 {
		return fmt.Errorf("EXT-X-MEDIA-SEQUENCE given twice (first at line %d)", p.seqLine)
	}
	if len(p.pl.Segments) > 0 {
		return fmt.Errorf("EXT-X-MEDIA-SEQUENCE after the first segment")
	}
	n, err := parseUint(val)
	if err != nil || n > math.MaxInt64-MaxLines {
		return fmt.Errorf("EXT-X-MEDIA-SEQUENCE %q is not a decimal integer in range", val)
	}
	p.seq, p.seqLine = n, i+1
	return nil
}

// masterTag handles the tags that only appear in master playlists and
// collects the playlists they reference.
func (p *parser) masterTag(i int, name, val string) (bool, error) {
	switch name {
	case "#EXT-X-STREAM-INF", "#EXT-X-I-FRAME-STREAM-INF", "#EXT-X-MEDIA",
		"#EXT-X-SESSION-KEY", "#EXT-X-SESSION-DATA", "#EXT-X-CONTENT-STEERING":
	default:
		return false, nil
	}
	if err := p.setKind(kindMaster, i, name[1:]); err != nil {
		return true, err
	}
	switch name {
	case "#EXT-X-STREAM-INF":
		p.streamInf = i + 1
	case "#EXT-X-I-FRAME-STREAM-INF":
		return true, p.attrRef(name, val, true)
	case "#EXT-X-MEDIA":
		return true, p.attrRef(name, val, false)
	case "#EXT-X-SESSION-KEY":
		m, err := keyMethod(val)
		if err != nil {
			return true, fmt.Errorf("EXT-X-SESSION-KEY: %v", err)
		}
		p.pl.Encrypted = p.pl.Encrypted || m != "NONE"
	case "#EXT-X-SESSION-DATA":
		return true, p.sideRefs(i, name, val, func(a string) bool { return a == "URI" }, false)
	case "#EXT-X-CONTENT-STEERING":
		return true, p.sideRefs(i, name, val, func(a string) bool { return a == "SERVER-URI" }, false)
	}
	return true, nil
}

// attrRef records the URI attribute of a master tag as a reference.
func (p *parser) attrRef(name, val string, required bool) error {
	as, err := parseAttrs(val)
	if err != nil {
		return fmt.Errorf("%s: %v", name[1:], err)
	}
	u, ok := findAttr(as, "URI")
	if !ok && !required {
		return nil // e.g. CLOSED-CAPTIONS renditions carry no URI
	}
	if !ok || !u.Quoted || u.Value == "" {
		return fmt.Errorf("%s without a quoted URI", name[1:])
	}
	p.addRef(u.Value)
	return nil
}

// commonTag handles tags valid in both kinds of playlist, and unknown ones.
func (p *parser) commonTag(i int, name, val string) error {
	switch name {
	case "#EXTM3U":
		return fmt.Errorf("#EXTM3U again (concatenated playlists?)")
	case "#EXT-X-DEFINE":
		// Variable substitution would change URIs after we resolved them.
		return fmt.Errorf("EXT-X-DEFINE (variable substitution) is not supported")
	case "#EXT-X-VERSION":
		return p.version(i, val)
	}
	return nil
}

func (p *parser) version(i int, val string) error {
	if p.verLine != 0 {
		return fmt.Errorf("EXT-X-VERSION given twice (first at line %d)", p.verLine)
	}
	n, err := parseUint(val)
	if err != nil || n < 1 || n > 1000 {
		return fmt.Errorf("EXT-X-VERSION %q is not a valid version", val)
	}
	p.pl.Version, p.verLine = int(n), i+1
	p.lay.roles[i] = role{kind: roleVersion}
	return nil
}
