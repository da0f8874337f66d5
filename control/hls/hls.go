// Package hls reads HLS playlists (RFC 8216) and rewrites media playlists so
// that their segments can be served encrypted.
//
// The rewriter never re-encodes a playlist through a generic HLS library:
// those drop details (a second EXT-X-MAP, unknown tags, comments) that players
// or the author may rely on. Instead every source line is copied verbatim and
// only what encryption requires is touched: EXT-X-KEY lines are inserted,
// EXT-X-BYTERANGE values and EXT-X-MAP BYTERANGE attributes are replaced,
// segment URIs are replaced where the caller moves ranges to another file
// (I-frame copies), and EXT-X-VERSION may be raised. Master playlists are served verbatim, so this
// package only lists what they reference.
package hls

import "fmt"

// Limits against hostile input; a real playlist is far below both.
const (
	MaxBytes = 64 << 20  // largest playlist Parse accepts
	MaxLines = 1_000_000 // most lines Parse accepts
)

// ByteRange is a sub-range of a resource: Len bytes starting at Off.
type ByteRange struct{ Len, Off int64 }

// Map is an EXT-X-MAP (Media Initialization Section).
type Map struct {
	URI       string     // as written
	ByteRange *ByteRange // resolved (Off always filled; 0 when @o is omitted), nil if none
}

// Segment is one media segment of a media playlist.
type Segment struct {
	URI           string     // as written in the playlist
	Duration      float64    // EXTINF
	Start         float64    // seconds from the start of the playlist (sum of earlier durations)
	SeqNo         int64      // EXT-X-MEDIA-SEQUENCE + index
	ByteRange     *ByteRange // resolved (see Parse), nil if none
	Map           int        // index into Playlist.Maps of the EXT-X-MAP in force, -1 if none
	Discontinuity bool
	// Gap: EXT-X-GAP, players must not load the segment (RFC 8216bis
	// 4.4.4.7), so its object may legitimately be missing.
	Gap bool
}

// SideRef is a URI in a tag that is neither a segment, a map, a key nor a
// playlist the caller follows (EXT-X-SESSION-DATA, EXT-X-CONTENT-STEERING,
// URI attributes of EXT-X-DATERANGE): the caller must serve its object or
// refuse the playlist, never leave the reference dangling.
type SideRef struct {
	Tag  string // "EXT-X-SESSION-DATA"
	Attr string // "URI", "SERVER-URI", "X-ASSET-URI"
	URI  string // as written
	Line int    // 1-based
	// Presentation: the URI names another presentation (an interstitial's
	// playlist or asset list), not a plain data file.
	Presentation bool
}

// Playlist is what Parse learned about a master or media playlist.
type Playlist struct {
	Master       bool
	Refs         []string  // master only: referenced playlist URIs, in order, deduplicated
	Segments     []Segment // media only
	Maps         []Map     // media only, in order of appearance
	Version      int       // EXT-X-VERSION, 0 if absent
	IFramesOnly  bool
	Ended        bool   // EXT-X-ENDLIST present
	PlaylistType string // EXT-X-PLAYLIST-TYPE value or ""
	// Encrypted: an EXT-X-KEY (or, in a master, EXT-X-SESSION-KEY) with a
	// METHOD other than NONE is present in the source.
	Encrypted bool
	// SideRefs are the URIs of tags the caller does not follow, in order.
	SideRefs []SideRef
}

// ParseError is returned by Parse. Line is 1-based, 0 when the error is about
// the whole input (size, missing segments, ...).
type ParseError struct {
	Line int
	Msg  string
}

func (e *ParseError) Error() string {
	if e.Line <= 0 {
		return e.Msg
	}
	return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
}

// KeyTag is the EXT-X-KEY a segment (or init section) is encrypted with.
// IV "" means no IV attribute; otherwise it is written as given and must be
// "0x" followed by 32 hex digits.
type KeyTag struct{ Method, URI, IV string }

// SegmentOut says how RewriteMedia must present one segment.
type SegmentOut struct {
	Key       *KeyTag    // nil: the segment stays clear
	ByteRange *ByteRange // non-nil: the new EXT-X-BYTERANGE value (always written as len@off)
	// URI, when not "", replaces the segment's URI line: its ranges are
	// served from another file (an I-frame playlist's own copy of
	// segments that another playlist encrypts whole). A segment with a
	// new URI must have a byte range and get a new one.
	URI string
}

// MapOut says how RewriteMedia must present one EXT-X-MAP.
type MapOut struct {
	ByteRange *ByteRange // non-nil: the new BYTERANGE="len@off" of that EXT-X-MAP
	// Key is the key the init section is encrypted with; nil means it is
	// clear. It matters because players decrypt an init section with the
	// EXT-X-KEY in force where its EXT-X-MAP appears (RFC 8216 4.3.2.5).
	Key *KeyTag
}
