package gateway

import (
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// planMarshaler is the gateway's JSON marshaler: runtime.JSONPb (protojson
// with the options of jsonMarshaler) for everything, except that responses
// are written from a per-message-type plan when the plan can write them.
//
// protojson walks a message through the generic reflection API and
// collects and sorts its fields again on every call; for a product that was
// the largest single item of the gateway's work per request. A plan is
// built once per message type: each field's key, already quoted, and how
// to write its value. It writes exactly what protojson writes with
// UseProtoNames and EmitUnpopulated (fields in declaration order, proto
// names, every field present, int64 as strings, Timestamps in RFC 3339 with
// 0, 3, 6 or 9 fractional digits), less protojson's deliberately unstable
// whitespace. Types it does not cover (maps, oneofs, floats, bytes,
// well-known types other than Timestamp) have no plan, and values protojson
// would refuse (invalid UTF-8, a Timestamp out of range) abandon the plan;
// both go to protojson, which writes them or reports the error.
// TestPlansWriteWhatProtojsonWrites holds the two to the same output for
// every message of the API.
//
// Written here because no maintained library does this: the generated
// JSON codecs that exist are experimental or wrap protojson.
type planMarshaler struct {
	*runtime.JSONPb
	plans sync.Map // protoreflect.MessageDescriptor -> *messagePlan (nil: no plan)
}

// Marshal writes v from its plan when it has one, else with protojson.
func (m *planMarshaler) Marshal(v any) ([]byte, error) {
	if msg, ok := v.(proto.Message); ok {
		if p := m.plan(msg.ProtoReflect().Descriptor()); p != nil {
			if b, ok := p.append(make([]byte, 0, 512), msg.ProtoReflect()); ok {
				return b, nil
			}
		}
	}
	return m.JSONPb.Marshal(v)
}

// plan returns the plan of md, building it on first use; nil when md has
// none.
func (m *planMarshaler) plan(md protoreflect.MessageDescriptor) *messagePlan {
	if p, ok := m.plans.Load(md); ok {
		return p.(*messagePlan)
	}
	var p *messagePlan
	// A well-known type has a JSON form of its own (a Timestamp is a
	// string), also as the whole response.
	if md.ParentFile().Package() != "google.protobuf" {
		p = buildPlan(md, map[protoreflect.FullName]*messagePlan{})
	}
	m.plans.Store(md, p)
	return p
}

// messagePlan writes one message type.
type messagePlan struct {
	fields []fieldPlan
}

type fieldPlan struct {
	fd protoreflect.FieldDescriptor
	// key is `"name":`, preceded by a comma for every field but the first.
	key string
	// write appends one value (one element, for a list).
	write valueWriter
}

// valueWriter appends v; false abandons the plan.
type valueWriter func(b []byte, v protoreflect.Value) ([]byte, bool)

// buildPlan returns md's plan, or nil when a field of md (or of a message
// within it) has a kind the plans do not cover. building holds the plans
// under construction, so recursive types end.
func buildPlan(md protoreflect.MessageDescriptor, building map[protoreflect.FullName]*messagePlan) *messagePlan {
	if p, ok := building[md.FullName()]; ok {
		return p
	}
	p := &messagePlan{}
	building[md.FullName()] = p
	fds := md.Fields()
	for i := range fds.Len() {
		fd := fds.Get(i)
		if fd.IsMap() || fd.ContainingOneof() != nil || fd.IsExtension() {
			return nil
		}
		write := valueWriterOf(fd, building)
		if write == nil {
			return nil
		}
		key := strconv.Quote(string(fd.Name())) + ":" // proto names are [A-Za-z0-9_]
		if i > 0 {
			key = "," + key
		}
		p.fields = append(p.fields, fieldPlan{fd: fd, key: key, write: write})
	}
	return p
}

func valueWriterOf(fd protoreflect.FieldDescriptor, building map[protoreflect.FullName]*messagePlan) valueWriter {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return writeString
	case protoreflect.BoolKind:
		return writeBool
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return writeInt32
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return writeUint32
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return writeInt64
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return writeUint64
	case protoreflect.EnumKind:
		if fd.Enum().FullName() == "google.protobuf.NullValue" {
			return nil
		}
		values := fd.Enum().Values()
		return func(b []byte, v protoreflect.Value) ([]byte, bool) {
			if ev := values.ByNumber(v.Enum()); ev != nil {
				return appendJSONString(b, string(ev.Name()))
			}
			return strconv.AppendInt(b, int64(v.Enum()), 10), true
		}
	case protoreflect.MessageKind:
		md := fd.Message()
		if md.FullName() == "google.protobuf.Timestamp" {
			return writeTimestamp
		}
		if md.ParentFile().Package() == "google.protobuf" {
			return nil // other well-known types have JSON forms of their own
		}
		p := buildPlan(md, building)
		if p == nil {
			return nil
		}
		return func(b []byte, v protoreflect.Value) ([]byte, bool) { return p.append(b, v.Message()) }
	}
	return nil // floats, bytes, groups
}

// append writes msg as a JSON object.
func (p *messagePlan) append(b []byte, msg protoreflect.Message) ([]byte, bool) {
	b = append(b, '{')
	for i := range p.fields {
		f := &p.fields[i]
		b = append(b, f.key...)
		var ok bool
		switch {
		case f.fd.IsList():
			b, ok = f.appendList(b, msg.Get(f.fd).List())
		case f.fd.Message() != nil && !msg.Has(f.fd):
			b, ok = append(b, "null"...), true
		default:
			b, ok = f.write(b, msg.Get(f.fd))
		}
		if !ok {
			return b, false
		}
	}
	return append(b, '}'), true
}

func (f *fieldPlan) appendList(b []byte, list protoreflect.List) ([]byte, bool) {
	b = append(b, '[')
	for i := range list.Len() {
		if i > 0 {
			b = append(b, ',')
		}
		var ok bool
		if b, ok = f.write(b, list.Get(i)); !ok {
			return b, false
		}
	}
	return append(b, ']'), true
}

func writeString(b []byte, v protoreflect.Value) ([]byte, bool) {
	return appendJSONString(b, v.String())
}

func writeBool(b []byte, v protoreflect.Value) ([]byte, bool) {
	return strconv.AppendBool(b, v.Bool()), true
}

func writeInt32(b []byte, v protoreflect.Value) ([]byte, bool) {
	return strconv.AppendInt(b, v.Int(), 10), true
}

func writeUint32(b []byte, v protoreflect.Value) ([]byte, bool) {
	return strconv.AppendUint(b, v.Uint(), 10), true
}

// writeInt64 and writeUint64 quote, as protojson does: JavaScript numbers
// cannot hold every 64-bit integer.
func writeInt64(b []byte, v protoreflect.Value) ([]byte, bool) {
	b = append(b, '"')
	b = strconv.AppendInt(b, v.Int(), 10)
	return append(b, '"'), true
}

func writeUint64(b []byte, v protoreflect.Value) ([]byte, bool) {
	b = append(b, '"')
	b = strconv.AppendUint(b, v.Uint(), 10)
	return append(b, '"'), true
}

// The range protojson accepts: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
const (
	minTimestampSeconds = -62135596800
	maxTimestampSeconds = 253402300799
)

// writeTimestamp writes RFC 3339 in UTC with 0, 3, 6 or 9 fractional
// digits, as protojson does.
func writeTimestamp(b []byte, v protoreflect.Value) ([]byte, bool) {
	m := v.Message()
	fds := m.Descriptor().Fields()
	secs, nanos := m.Get(fds.ByNumber(1)).Int(), m.Get(fds.ByNumber(2)).Int()
	if secs < minTimestampSeconds || secs > maxTimestampSeconds || nanos < 0 || nanos >= int64(time.Second) {
		return b, false
	}
	b = append(b, '"')
	b = time.Unix(secs, nanos).UTC().AppendFormat(b, "2006-01-02T15:04:05")
	if nanos != 0 {
		digits := 9
		for digits > 3 && nanos%1000 == 0 {
			nanos /= 1000
			digits -= 3
		}
		b = append(b, '.')
		s := strconv.AppendInt(make([]byte, 0, 9), nanos, 10)
		for range digits - len(s) {
			b = append(b, '0')
		}
		b = append(b, s...)
	}
	return append(b, 'Z', '"'), true
}

// appendJSONString writes s as protojson does: the quote, the backslash
// and control characters escaped (the short forms where JSON has them),
// everything else as is. Invalid UTF-8 abandons the plan (protojson
// refuses it).
func appendJSONString(b []byte, s string) ([]byte, bool) {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				return b, false
			}
			i += n
			continue
		}
		if c >= ' ' && c != '"' && c != '\\' {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigit(c>>4), hexDigit(c&0xf))
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"'), true
}

func hexDigit(c byte) byte {
	if c < 10 {
		return '0' + c
	}
	return 'a' + c - 10
}
