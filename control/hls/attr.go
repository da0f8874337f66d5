package hls

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// attr is one NAME=VALUE of an attribute list. Start and End locate the
// value (without quotes) in the list, so one value can be replaced in place
// while everything else in the line stays byte-for-byte.
type attr struct {
	Name, Value string
	Quoted      bool
	Start, End  int
}

// parseAttrs splits an RFC 8216 4.2 attribute list. It tolerates white space
// around names (common in the wild) but rejects duplicates, since two values
// for one name would make any reading of the tag ambiguous.
func parseAttrs(s string) ([]attr, error) {
	var out []attr
	for i := 0; i < len(s); {
		a, next, err := parseAttr(s, i)
		if err != nil {
			return nil, err
		}
		for _, b := range out {
			if b.Name == a.Name {
				return nil, fmt.Errorf("attribute %s given twice", a.Name)
			}
		}
		out = append(out, a)
		i = next
	}
	return out, nil
}

// parseAttr reads the attribute starting at s[i] and returns the index
// just past it and its trailing comma.
func parseAttr(s string, i int) (attr, int, error) {
	eq := strings.IndexByte(s[i:], '=')
	if eq < 0 {
		return attr{}, 0, fmt.Errorf("malformed attribute list %q: missing '='", s)
	}
	a := attr{Name: strings.TrimSpace(s[i : i+eq])}
	if !isAttrName(a.Name) {
		return attr{}, 0, fmt.Errorf("malformed attribute name %q", a.Name)
	}
	i += eq + 1
	if i < len(s) && s[i] == '"' {
		end := strings.IndexByte(s[i+1:], '"')
		if end < 0 {
			return attr{}, 0, fmt.Errorf("attribute %s: unterminated quoted string", a.Name)
		}
		a.Quoted, a.Start, a.End = true, i+1, i+1+end
		i = a.End + 1
	} else {
		end := strings.IndexByte(s[i:], ',')
		if end < 0 {
			end = len(s) - i
		}
		a.Start, a.End = i, i+end
		i = a.End
	}
	a.Value = s[a.Start:a.End]
	if i < len(s) {
		if s[i] != ',' {
			return attr{}, 0, fmt.Errorf("attribute %s: expected ',' after value", a.Name)
		}
		i++
	}
	return a, i, nil
}

func isAttrName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func findAttr(as []attr, name string) (attr, bool) {
	for _, a := range as {
		if a.Name == name {
			return a, true
		}
	}
	return attr{}, false
}

// parseUint parses an RFC 8216 decimal-integer: digits only, no sign, no
// spaces, so "-1", "+1" and " 1" are rejected rather than reinterpreted.
func parseUint(s string) (int64, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a decimal integer", s)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is out of range", s)
	}
	return n, nil
}

// parseDuration parses an EXTINF duration: digits with at most one '.', so
// signs, NaN, Inf, exponents and hex floats (all accepted by ParseFloat)
// are refused.
func parseDuration(s string) (float64, error) {
	bad := fmt.Errorf("duration %q is not a non-negative decimal number", s)
	if strings.Trim(s, ".") == "" || strings.Count(s, ".") > 1 || strings.TrimLeft(s, "0123456789.") != "" {
		return 0, bad
	}
	d, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(d, 0) {
		return 0, bad
	}
	return d, nil
}

// errNoOffset marks a byte range written without "@o".
var errNoOffset = errors.New("no offset")

// parseRange parses "n[@o]". Without @o it returns the length and
// errNoOffset so the caller can apply the rule that fits the tag.
func parseRange(s string) (ByteRange, error) {
	ls, os, hasOff := strings.Cut(s, "@")
	n, err := parseUint(ls)
	if err != nil {
		return ByteRange{}, fmt.Errorf("malformed byte range %q: length %v", s, err)
	}
	if n == 0 {
		return ByteRange{}, fmt.Errorf("malformed byte range %q: empty range", s)
	}
	if !hasOff {
		return ByteRange{Len: n}, errNoOffset
	}
	o, err := parseUint(os)
	if err != nil {
		return ByteRange{}, fmt.Errorf("malformed byte range %q: offset %v", s, err)
	}
	if o > math.MaxInt64-n {
		return ByteRange{}, fmt.Errorf("byte range %q ends beyond 2^63", s)
	}
	return ByteRange{Len: n, Off: o}, nil
}
