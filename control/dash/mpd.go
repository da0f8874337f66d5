// Package dash reads DASH MPDs and adds Common Encryption signalling to
// them, keeping everything else.
//
// The MPD is read with encoding/xml's raw tokens (prefixes as written, no
// namespace rewriting) into a small tree and written back from it: every
// element, attribute, comment and text of the source is kept, in order;
// only ContentProtection elements (and the namespace declarations they
// need) are added. Empty elements are written as <x/>, which XML readers
// cannot tell from <x></x>.
package dash

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// MaxBytes is the largest MPD Parse accepts.
const MaxBytes = 16 << 20

// Node is an element: its name and attributes as written (prefix in
// Name.Space), and its children: *Node, or xml.CharData, xml.Comment,
// xml.ProcInst, xml.Directive copies.
type Node struct {
	Name xml.Name
	Attr []xml.Attr
	Kids []any
}

// MPD is a parsed MPD document.
type MPD struct {
	Doc  []any // top level: the root *Node among prolog tokens
	Root *Node
}

// Parse reads an MPD.
func Parse(data []byte) (*MPD, error) {
	if len(data) > MaxBytes {
		return nil, fmt.Errorf("MPD is %d bytes (limit %d)", len(data), MaxBytes)
	}
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	m := &MPD{}
	var stack []*Node
	add := func(x any) {
		if len(stack) == 0 {
			m.Doc = append(m.Doc, x)
		} else {
			top := stack[len(stack)-1]
			top.Kids = append(top.Kids, x)
		}
	}
	for {
		tok, err := d.RawToken()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("MPD is not well-formed XML: %v", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			n := &Node{Name: t.Name, Attr: append([]xml.Attr(nil), t.Attr...)}
			if len(stack) == 0 && m.Root != nil {
				return nil, errors.New("MPD has two root elements")
			}
			add(n)
			if len(stack) == 0 {
				m.Root = n
			}
			stack = append(stack, n)
		case xml.EndElement:
			if len(stack) == 0 || stack[len(stack)-1].Name != t.Name {
				return nil, fmt.Errorf("MPD: unexpected end tag %s", qname(t.Name))
			}
			stack = stack[:len(stack)-1]
		default:
			add(xml.CopyToken(t))
		}
	}
	if len(stack) > 0 {
		return nil, errors.New("MPD ends inside an element")
	}
	if m.Root == nil || m.Root.Name.Local != "MPD" {
		return nil, errors.New("not an MPD (no MPD root element)")
	}
	return m, nil
}

func qname(n xml.Name) string {
	if n.Space != "" {
		return n.Space + ":" + n.Local
	}
	return n.Local
}

// Get returns an attribute's value (unprefixed name) and whether it is set.
func (n *Node) Get(local string) (string, bool) {
	for _, a := range n.Attr {
		if a.Name.Space == "" && a.Name.Local == local {
			return a.Value, true
		}
	}
	return "", false
}

// Children returns the child elements named local (any prefix that is
// the default namespace: none).
func (n *Node) Children(local string) []*Node {
	var out []*Node
	if n == nil {
		return nil
	}
	for _, k := range n.Kids {
		if c, ok := k.(*Node); ok && c.Name.Space == "" && c.Name.Local == local {
			out = append(out, c)
		}
	}
	return out
}

// Child returns the first child element named local, or nil.
func (n *Node) Child(local string) *Node {
	if c := n.Children(local); len(c) > 0 {
		return c[0]
	}
	return nil
}

// Text is the node's character data.
func (n *Node) Text() string {
	var b strings.Builder
	for _, k := range n.Kids {
		if c, ok := k.(xml.CharData); ok {
			b.Write(c)
		}
	}
	return strings.TrimSpace(b.String())
}

// SetNamespace declares xmlns:prefix=uri on the root unless the prefix
// is declared there already.
func (m *MPD) SetNamespace(prefix, uri string) {
	for _, a := range m.Root.Attr {
		if a.Name.Space == "xmlns" && a.Name.Local == prefix {
			return
		}
	}
	m.Root.Attr = append(m.Root.Attr, xml.Attr{Name: xml.Name{Space: "xmlns", Local: prefix}, Value: uri})
}

// InsertEarly adds kids to n before its first child element that the
// MPD schema places after ContentProtection (anything but FramePacking
// and AudioChannelConfiguration), with the indentation the source uses.
func (n *Node) InsertEarly(kids ...*Node) {
	at := len(n.Kids)
	indent := ""
	for i, k := range n.Kids {
		c, ok := k.(*Node)
		if !ok {
			continue
		}
		if c.Name.Local == "FramePacking" || c.Name.Local == "AudioChannelConfiguration" {
			continue
		}
		at = i
		if i > 0 {
			if cd, ok := n.Kids[i-1].(xml.CharData); ok {
				indent = string(cd)
			}
		}
		break
	}
	var add []any
	for _, k := range kids {
		add = append(add, k)
		if indent != "" {
			add = append(add, xml.CharData(indent))
		}
	}
	n.Kids = append(n.Kids[:at], append(add, n.Kids[at:]...)...)
}

// Bytes writes the document back.
func (m *MPD) Bytes() []byte {
	var b bytes.Buffer
	for _, x := range m.Doc {
		writeAny(&b, x)
	}
	return b.Bytes()
}

func writeAny(b *bytes.Buffer, x any) {
	switch t := x.(type) {
	case *Node:
		b.WriteByte('<')
		b.WriteString(qname(t.Name))
		for _, a := range t.Attr {
			b.WriteByte(' ')
			b.WriteString(qname(a.Name))
			b.WriteString(`="`)
			escape(b, a.Value, true)
			b.WriteByte('"')
		}
		if len(t.Kids) == 0 {
			b.WriteString("/>")
			return
		}
		b.WriteByte('>')
		for _, k := range t.Kids {
			writeAny(b, k)
		}
		b.WriteString("</")
		b.WriteString(qname(t.Name))
		b.WriteByte('>')
	case xml.CharData:
		escape(b, string(t), false)
	case xml.Comment:
		b.WriteString("<!--")
		b.Write(t)
		b.WriteString("-->")
	case xml.ProcInst:
		b.WriteString("<?")
		b.WriteString(t.Target)
		if len(t.Inst) > 0 {
			b.WriteByte(' ')
			b.Write(t.Inst)
		}
		b.WriteString("?>")
	case xml.Directive:
		b.WriteString("<!")
		b.Write(t)
		b.WriteByte('>')
	}
}

// escape writes s as XML text (attr: inside double quotes, where
// newlines and tabs must be character references to survive).
func escape(b *bytes.Buffer, s string, attr bool) {
	for _, r := range s {
		switch {
		case r == '&':
			b.WriteString("&amp;")
		case r == '<':
			b.WriteString("&lt;")
		case r == '>':
			b.WriteString("&gt;")
		case attr && r == '"':
			b.WriteString("&quot;")
		case attr && r == '\n':
			b.WriteString("&#xA;")
		case attr && r == '\t':
			b.WriteString("&#x9;")
		case attr && r == '\r', !attr && r == '\r':
			b.WriteString("&#xD;")
		default:
			b.WriteRune(r)
		}
	}
}

// NewNode makes an element with attributes given as name, value pairs
// ("cenc:default_KID" for a prefixed name).
func NewNode(name string, attrs ...string) *Node {
	n := &Node{Name: splitName(name)}
	for i := 0; i+1 < len(attrs); i += 2 {
		n.Attr = append(n.Attr, xml.Attr{Name: splitName(attrs[i]), Value: attrs[i+1]})
	}
	return n
}

// WithText adds character data to n.
func (n *Node) WithText(s string) *Node {
	n.Kids = append(n.Kids, xml.CharData(s))
	return n
}

// With adds child elements to n.
func (n *Node) With(kids ...*Node) *Node {
	for _, k := range kids {
		n.Kids = append(n.Kids, k)
	}
	return n
}

func splitName(s string) xml.Name {
	if i := strings.IndexByte(s, ':'); i >= 0 {
		return xml.Name{Space: s[:i], Local: s[i+1:]}
	}
	return xml.Name{Local: s}
}
