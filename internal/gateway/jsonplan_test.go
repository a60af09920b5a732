package gateway

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	catalogv1 "github.com/mercato-dev/mercato/internal/gen/catalog/v1"
)

// apiMessages are every message type of the API's own proto files.
func apiMessages(t *testing.T) []protoreflect.MessageType {
	t.Helper()
	var types []protoreflect.MessageType
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if !strings.HasSuffix(string(fd.Package()), ".v1") || strings.HasPrefix(fd.Path(), "google/") {
			return true
		}
		var walk func(protoreflect.MessageDescriptors)
		walk = func(mds protoreflect.MessageDescriptors) {
			for i := range mds.Len() {
				md := mds.Get(i)
				if md.IsMapEntry() {
					continue
				}
				mt, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName())
				require.NoError(t, err)
				types = append(types, mt)
				walk(md.Messages())
			}
		}
		walk(fd.Messages())
		return true
	})
	require.Greater(t, len(types), 40, "the API's messages are registered")
	return types
}

// TestPlansWriteWhatProtojsonWrites fills every message of the API at
// random, a few hundred times each, with the values most likely to differ
// (escapes, invalid UTF-8, extreme integers, Timestamps at every precision
// and out of range, unknown enum numbers) and requires the gateway's
// marshaler to write what protojson writes, or to fail where it fails.
func TestPlansWriteWhatProtojsonWrites(t *testing.T) {
	pm := &planMarshaler{JSONPb: jsonMarshaler}
	rng := rand.New(rand.NewPCG(1, 2))
	planned := 0
	for _, mt := range apiMessages(t) {
		if pm.plan(mt.Descriptor()) != nil {
			planned++
		}
		for range 300 {
			msg := mt.New()
			fill(rng, msg, 0)
			want, wantErr := jsonMarshaler.Marshal(msg.Interface())
			got, gotErr := pm.Marshal(msg.Interface())
			if wantErr != nil {
				require.Error(t, gotErr, "%s: protojson fails: %v", mt.Descriptor().FullName(), wantErr)
				continue
			}
			require.NoError(t, gotErr)
			require.Equal(t, compact(t, want), compact(t, got), "%s", mt.Descriptor().FullName())
		}
	}
	require.Greater(t, planned, 30, "most messages have plans")

	// Well-known types, also as the whole response, keep their own forms.
	for _, m := range []proto.Message{
		timestamppb.New(time.Unix(1795260316, 191683000)), durationpb.New(1500 * time.Millisecond),
		wrapperspb.String("x"), &fieldmaskpb.FieldMask{Paths: []string{"a.b", "c"}}, &emptypb.Empty{},
	} {
		want, err := jsonMarshaler.Marshal(m)
		require.NoError(t, err)
		got, err := pm.Marshal(m)
		require.NoError(t, err)
		require.Equal(t, compact(t, want), compact(t, got), "%T", m)
	}

	// The hot responses must keep theirs.
	for _, m := range []proto.Message{&catalogv1.Product{}, &catalogv1.ListProductsResponse{}} {
		require.NotNil(t, pm.plan(m.ProtoReflect().Descriptor()), "%T", m)
	}
}

func compact(t *testing.T, b []byte) string {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, json.Compact(&buf, b), "%s", b)
	return buf.String()
}

var trickyStrings = []string{
	"", "plain", `quote " and backslash \`, "new\nline\ttab\rcr\bbs\fff", "nul\x00 unit\x1f del\x7f",
	"café ☕ 日本", "\u2028\u2029", "<script>&amp;</script>", "replacement \uFFFD is valid", "broken \xff utf8", "\xc3",
}

// fill sets every field of msg at random; message fields stay unset some
// of the time, and nesting stops at depth 3.
func fill(rng *rand.Rand, msg protoreflect.Message, depth int) {
	fds := msg.Descriptor().Fields()
	for i := range fds.Len() {
		fd := fds.Get(i)
		if oneof := fd.ContainingOneof(); oneof != nil && msg.WhichOneof(oneof) != nil {
			continue
		}
		if rng.IntN(4) == 0 {
			continue // unpopulated
		}
		switch {
		case fd.IsList():
			list := msg.Mutable(fd).List()
			for range rng.IntN(4) {
				if v, ok := randomValue(rng, fd, list.NewElement, depth); ok {
					list.Append(v)
				}
			}
		case fd.IsMap():
			m := msg.Mutable(fd).Map()
			for range rng.IntN(3) {
				k, kok := randomValue(rng, fd.MapKey(), nil, depth)
				v, vok := randomValue(rng, fd.MapValue(), m.NewValue, depth)
				if kok && vok {
					m.Set(k.MapKey(), v)
				}
			}
		default:
			if v, ok := randomValue(rng, fd, func() protoreflect.Value { return msg.NewField(fd) }, depth); ok {
				msg.Set(fd, v)
			}
		}
	}
}

func randomValue(rng *rand.Rand, fd protoreflect.FieldDescriptor, newMessage func() protoreflect.Value, depth int) (protoreflect.Value, bool) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(trickyStrings[rng.IntN(len(trickyStrings))]), true
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte(trickyStrings[rng.IntN(len(trickyStrings))])), true
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(rng.IntN(2) == 0), true
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32([]int32{0, 1, -1, 1699, math.MaxInt32, math.MinInt32}[rng.IntN(6)]), true
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32([]uint32{0, 1, math.MaxUint32}[rng.IntN(3)]), true
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64([]int64{0, -1, 42, math.MaxInt64, math.MinInt64}[rng.IntN(5)]), true
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64([]uint64{0, 7, math.MaxUint64}[rng.IntN(3)]), true
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32([]float32{0, 1.5, -2e-7}[rng.IntN(3)]), true
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64([]float64{0, 0.1, 1e21, math.Inf(1)}[rng.IntN(4)]), true
	case protoreflect.EnumKind:
		values := fd.Enum().Values()
		if rng.IntN(5) == 0 {
			return protoreflect.ValueOfEnum(protoreflect.EnumNumber(values.Len() + 7)), true // unknown number
		}
		return protoreflect.ValueOfEnum(values.Get(rng.IntN(values.Len())).Number()), true
	case protoreflect.MessageKind:
		if depth >= 3 {
			return protoreflect.Value{}, false
		}
		v := newMessage()
		m := v.Message()
		switch m.Descriptor().FullName() {
		case "google.protobuf.Timestamp":
			fds := m.Descriptor().Fields()
			secs := []int64{0, 1795260316, -62135596800, 253402300799, 253402300800, -62135596801}[rng.IntN(6)]
			nanos := []int64{0, 123000000, 1000000, 123456000, 100, 999999999, -1}[rng.IntN(7)]
			m.Set(fds.ByNumber(1), protoreflect.ValueOfInt64(secs))
			m.Set(fds.ByNumber(2), protoreflect.ValueOfInt32(int32(nanos)))
		case "google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue", "google.protobuf.Any":
			// left empty: their JSON forms have rules of their own that
			// random content would break (an Any needs a resolvable type)
		default:
			fill(rng, m, depth+1)
		}
		return v, true
	}
	return protoreflect.Value{}, false
}

// BenchmarkMarshalProduct compares the plan with protojson on the hottest
// response:
//
//	go test -run '^$' -bench MarshalProduct -benchmem ./internal/gateway
func BenchmarkMarshalProduct(b *testing.B) {
	p := &catalogv1.Product{
		Id: "01a1fdd3-84df-7a6c-b4fa-151f691fb331", Sku: "COF-ETH-250", Name: "Ethiopia Yirgacheffe Whole Bean Coffee",
		Description: "Washed heirloom Arabica from Gedeo. Light roast with notes of jasmine, bergamot and lemon curd. 250 g bag.",
		PriceCents:  1699, Currency: "USD", Categories: []string{"coffee"}, ImageUrl: "https://picsum.photos/seed/cof-eth-250/800/800",
		CreatedAt: timestamppb.New(time.Unix(1795260316, 191683000)), UpdatedAt: timestamppb.New(time.Unix(1795260316, 191683000)),
	}
	for name, m := range map[string]interface{ Marshal(any) ([]byte, error) }{
		"plan": &planMarshaler{JSONPb: jsonMarshaler}, "protojson": jsonMarshaler,
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.Marshal(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
