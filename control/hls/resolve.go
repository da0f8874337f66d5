package hls

import (
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// ResolveURI resolves a URI found in the playlist stored at object key
// playlistKey (e.g. "vod/a/index.m3u8") to an object key in the same bucket
// ("vod/a/720p/seg1.ts"), percent-decoding it.
//
// Only relative paths that stay in the bucket are accepted; the error names
// the URI otherwise. Refused: a scheme ("http://", "s3://", any ':' in the
// first segment, as URL parsers would read a scheme there), "//host", a
// leading "/", ".." above the bucket root, a query or fragment (we cannot
// serve those), and what players and our filesystem could read differently
// from us: backslashes, empty segments ("a//b"), a trailing "/" or dot
// segment (no object named), and escapes decoding to '/', '\', control
// characters or invalid UTF-8. Dot segments count after decoding, as
// browsers treat "%2e%2e" as "..".
func ResolveURI(playlistKey, uri string) (string, error) {
	if err := checkRelative(uri); err != nil {
		return "", fmt.Errorf("hls: URI %q: %v", uri, err)
	}
	segs := strings.Split(playlistKey, "/")
	segs = segs[:len(segs)-1] // the playlist's "directory"
	parts := strings.Split(uri, "/")
	for i, raw := range parts {
		s, err := decodeSegment(raw, i == len(parts)-1)
		if err != nil {
			return "", fmt.Errorf("hls: URI %q: %v", uri, err)
		}
		switch s {
		case ".":
		case "..":
			if len(segs) == 0 {
				return "", fmt.Errorf("hls: URI %q leaves the bucket (.. above its root)", uri)
			}
			segs = segs[:len(segs)-1]
		default:
			segs = append(segs, s)
		}
	}
	return strings.Join(segs, "/"), nil
}

// checkRelative refuses URIs that are not relative paths.
func checkRelative(uri string) error {
	first, _, _ := strings.Cut(uri, "/")
	switch {
	case uri == "":
		return fmt.Errorf("empty")
	case strings.ContainsAny(uri, "?#"):
		return fmt.Errorf("query strings and fragments cannot be served")
	case strings.HasPrefix(uri, "//"):
		return fmt.Errorf("leaves the bucket (network-path reference)")
	case strings.HasPrefix(uri, "/"):
		return fmt.Errorf("leaves the bucket (absolute path)")
	case strings.Contains(first, ":"):
		return fmt.Errorf("leaves the bucket (has a scheme)")
	case strings.Contains(uri, `\`):
		return fmt.Errorf("backslash is read as '/' by some players")
	}
	return nil
}

// decodeSegment percent-decodes one path segment and refuses what would
// not map to exactly one object key component.
func decodeSegment(raw string, last bool) (string, error) {
	s, err := url.PathUnescape(raw)
	if err != nil {
		return "", fmt.Errorf("bad percent-encoding")
	}
	switch {
	case s == "" && last:
		return "", fmt.Errorf("names a directory, not an object")
	case s == "":
		return "", fmt.Errorf("empty path segment")
	case (s == "." || s == "..") && last:
		return "", fmt.Errorf("names a directory, not an object")
	case strings.ContainsAny(s, `/\`):
		return "", fmt.Errorf("escaped '/' or '\\'")
	case !utf8.ValidString(s):
		return "", fmt.Errorf("not valid UTF-8 once decoded")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return "", fmt.Errorf("control character once decoded")
		}
	}
	return s, nil
}
