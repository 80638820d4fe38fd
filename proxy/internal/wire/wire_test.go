package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"
)

// frame builds a frame of type typ with the given body.
func frame(typ byte, body []byte) []byte {
	f := make([]byte, HeaderLen, HeaderLen+len(body))
	f[0] = typ
	putLen(f, 4+len(body))
	return append(f, body...)
}

// body returns n bytes of a pattern that depends on seed.
func body(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

// chunkReader hands out data in pieces chosen by next (given the number of
// bytes left, it returns how many to hand out; 0 means an empty read).
type chunkReader struct {
	data    []byte
	next    func(left int) int
	dataEOF bool // return io.EOF together with the last bytes
	err     error
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	n := min(c.next(len(c.data)), len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	if len(c.data) == 0 && c.dataEOF {
		return n, io.EOF
	}
	return n, nil
}

type splitter struct {
	name string
	new  func() func(left int) int
}

// splitters are the ways a source may cut its data into reads.
var splitters = []splitter{
	{"1 byte", func() func(int) int { return func(int) int { return 1 } }},
	{"2 bytes", func() func(int) int { return func(int) int { return 2 } }},
	{"3 bytes", func() func(int) int { return func(int) int { return 3 } }},
	{"all", func() func(int) int { return func(left int) int { return left } }},
	{"random", func() func(int) int {
		rng := rand.New(rand.NewPCG(1, 2))
		return func(int) int { return 1 + rng.IntN(17) }
	}},
	{"random large", func() func(int) int {
		rng := rand.New(rand.NewPCG(3, 4))
		return func(int) int { return 1 + rng.IntN(5000) }
	}},
	{"random with empty reads", func() func(int) int {
		rng := rand.New(rand.NewPCG(5, 6))
		return func(int) int { return rng.IntN(4) }
	}},
}

// streams are sequences of frames used by several tests.
var streams = []struct {
	name   string
	frames [][]byte
}{
	{"empty", nil},
	{"one empty body", [][]byte{frame('Z', nil)}},
	{"one small", [][]byte{frame('Z', []byte{'I'})}},
	{"data rows", func() [][]byte {
		var fs [][]byte
		for i := range 50 {
			fs = append(fs, frame('D', body(35, byte(i))))
		}
		return fs
	}()},
	{"mixed sizes", [][]byte{
		frame('T', body(20, 1)),
		frame('D', nil),
		frame('D', body(1, 2)),
		frame('D', body(100, 3)),
		frame('D', body(3000, 4)),
		frame('C', body(13, 5)),
		frame('Z', []byte{'I'}),
	}},
	{"big then small", [][]byte{
		frame('D', body(70000, 6)),
		frame('D', body(10, 7)),
		frame('D', body(4, 8)),
		frame('C', nil),
		frame('Z', []byte{'T'}),
	}},
	{"big ones in a row", [][]byte{
		frame('d', body(5000, 9)),
		frame('d', body(5001, 10)),
		frame('d', body(4999, 11)),
		frame('c', nil),
	}},
}

func concat(frames [][]byte) []byte {
	var b []byte
	for _, f := range frames {
		b = append(b, f...)
	}
	return b
}

var bufSizes = []int{1, HeaderLen, 8, 64, 4096}

func TestReadFrameReassembles(t *testing.T) {
	for _, st := range streams {
		for _, sp := range splitters {
			for _, size := range bufSizes {
				for _, dataEOF := range []bool{false, true} {
					name := fmt.Sprintf("%s/%s/buf=%d/dataEOF=%v", st.name, sp.name, size, dataEOF)
					t.Run(name, func(t *testing.T) {
						src := &chunkReader{data: concat(st.frames), next: sp.new(), dataEOF: dataEOF}
						rd := NewReader(src, size)
						for i, want := range st.frames {
							got, err := rd.ReadFrame(1 << 20)
							if err != nil {
								t.Fatalf("frame %d: %v", i, err)
							}
							if !bytes.Equal(got, want) {
								t.Fatalf("frame %d: got %d bytes %q..., want %d bytes %q...",
									i, len(got), head(got), len(want), head(want))
							}
						}
						if _, err := rd.ReadFrame(1 << 20); err != io.EOF {
							t.Fatalf("after the last frame: %v, want io.EOF", err)
						}
						if size >= HeaderLen && len(rd.Buf()) != size {
							t.Fatalf("buffer is %d bytes after the stream, want %d", len(rd.Buf()), size)
						}
					})
				}
			}
		}
	}
}

func head(b []byte) []byte {
	if len(b) > 8 {
		return b[:8]
	}
	return b
}

func TestRelayReassembles(t *testing.T) {
	for _, st := range streams {
		for _, sp := range splitters {
			for _, size := range []int{HeaderLen, 8, 64, 4096} {
				name := fmt.Sprintf("%s/%s/buf=%d", st.name, sp.name, size)
				t.Run(name, func(t *testing.T) {
					data := concat(st.frames)
					rd := NewReader(&chunkReader{data: data, next: sp.new()}, size)
					var out bytes.Buffer
					var totals []int
					err := forwardAll(rd, &out, func(_ byte, total int) { totals = append(totals, total) })
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(out.Bytes(), data) {
						t.Fatalf("relayed %d bytes, want %d identical ones", out.Len(), len(data))
					}
					if len(totals) != len(st.frames) {
						t.Fatalf("saw %d frames, want %d", len(totals), len(st.frames))
					}
					for i, f := range st.frames {
						if totals[i] != len(f) {
							t.Fatalf("frame %d: total %d, want %d", i, totals[i], len(f))
						}
					}
				})
			}
		}
	}
}

func TestStreamBody(t *testing.T) {
	big := frame('D', body(1000, 42))
	next := [][]byte{frame('D', body(3, 1)), frame('C', body(9, 2)), frame('Z', []byte{'I'})}
	data := append(append([]byte(nil), big...), concat(next)...)

	for _, tc := range []struct {
		name string
		size int
		// prefill is how many bytes are buffered before StreamBody: the
		// reader is given exactly that many in its first read.
		prefill int
	}{
		{"header partly buffered", 16, 3},
		{"header only", 16, HeaderLen},
		{"buffer full", 16, 16},
		{"nothing buffered", 16, 0},
		{"tiny buffer", 1, 1},
		{"big frame and next frames buffered", 2048, 2048},
		{"big frame and part of the next header", 2048, len(big) + 2},
		{"exactly the big frame", 2048, len(big)},
		{"all but one byte of the big frame", 2048, len(big) - 1},
	} {
		for _, sp := range splitters {
			t.Run(tc.name+"/"+sp.name, func(t *testing.T) {
				first := true
				split := sp.new()
				src := &chunkReader{data: data, next: func(left int) int {
					if first {
						first = false
						return tc.prefill
					}
					return split(left)
				}}
				rd := NewReader(src, tc.size)
				if tc.prefill > 0 {
					if err := rd.Fill(0); err != nil {
						t.Fatal(err)
					}
					if rd.Buffered() != min(tc.prefill, tc.size, len(data)) {
						t.Fatalf("buffered %d, want %d", rd.Buffered(), tc.prefill)
					}
				}
				var out bytes.Buffer
				if err := rd.StreamBody(&out, len(big)); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(out.Bytes(), big) {
					t.Fatalf("streamed %d bytes, want the %d bytes of the frame", out.Len(), len(big))
				}
				for i, want := range next {
					got, err := rd.ReadFrame(1 << 10)
					if err != nil {
						t.Fatalf("next frame %d: %v", i, err)
					}
					if !bytes.Equal(got, want) {
						t.Fatalf("next frame %d: got %q, want %q", i, got, want)
					}
				}
				if _, err := rd.ReadFrame(1 << 10); err != io.EOF {
					t.Fatalf("at the end: %v, want io.EOF", err)
				}
			})
		}
	}
}

func TestStreamBodyErrors(t *testing.T) {
	big := frame('d', body(500, 3))

	t.Run("source ends inside the frame", func(t *testing.T) {
		for _, cut := range []int{0, 3, HeaderLen, 16, 17, 200, len(big) - 1} {
			rd := NewReader(&chunkReader{data: big[:cut], next: func(int) int { return 7 }}, 16)
			if cut > 0 {
				if err := rd.Fill(0); err != nil {
					t.Fatal(err)
				}
			}
			var out bytes.Buffer
			err := rd.StreamBody(&out, len(big))
			if err != io.ErrUnexpectedEOF {
				t.Fatalf("cut at %d: %v, want io.ErrUnexpectedEOF", cut, err)
			}
			if !bytes.Equal(out.Bytes(), big[:cut]) {
				t.Fatalf("cut at %d: wrote %d bytes, want %d", cut, out.Len(), cut)
			}
		}
	})

	t.Run("source error", func(t *testing.T) {
		boom := errors.New("boom")
		rd := NewReader(&chunkReader{data: big[:100], next: func(int) int { return 10 }, err: boom}, 16)
		if err := rd.StreamBody(io.Discard, len(big)); err != boom {
			t.Fatalf("%v, want boom", err)
		}
	})

	t.Run("error with the last bytes", func(t *testing.T) {
		boom := errors.New("boom")
		src := iotest.DataErrReader(&chunkReader{data: concat([][]byte{big}), next: func(l int) int { return l }, err: boom})
		rd := NewReader(src, 16)
		var out bytes.Buffer
		if err := rd.StreamBody(&out, len(big)); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), big) {
			t.Fatal("output differs")
		}
		if err := rd.Fill(0); err != boom {
			t.Fatalf("next Fill: %v, want boom", err)
		}
	})

	t.Run("write error", func(t *testing.T) {
		boom := errors.New("boom")
		for _, prefill := range []bool{false, true} {
			rd := NewReader(bytes.NewReader(big), 16)
			if prefill {
				if err := rd.Fill(0); err != nil {
					t.Fatal(err)
				}
			}
			if err := rd.StreamBody(errWriter{boom}, len(big)); err != boom {
				t.Fatalf("prefill %v: %v, want boom", prefill, err)
			}
		}
	})

	t.Run("short write", func(t *testing.T) {
		rd := NewReader(bytes.NewReader(big), 16)
		if err := rd.StreamBody(shortWriter{}, len(big)); err != io.ErrShortWrite {
			t.Fatalf("%v, want io.ErrShortWrite", err)
		}
	})

	t.Run("negative total", func(t *testing.T) {
		rd := NewReader(bytes.NewReader(big), 16)
		if err := rd.StreamBody(io.Discard, -1); err != ErrBadLength {
			t.Fatalf("%v, want ErrBadLength", err)
		}
	})

	t.Run("empty buffer", func(t *testing.T) {
		rd := NewReader(bytes.NewReader(big), 0)
		if err := rd.StreamBody(io.Discard, len(big)); err == nil {
			t.Fatal("no error")
		}
	})
}

type errWriter struct{ err error }

func (w errWriter) Write([]byte) (int, error) { return 0, w.err }

type shortWriter struct{}

func (shortWriter) Write(p []byte) (int, error) { return len(p) / 2, nil }

func TestBadLength(t *testing.T) {
	for _, n := range []uint32{0, 1, 2, 3} {
		for _, sp := range splitters {
			t.Run(fmt.Sprintf("len=%d/%s", n, sp.name), func(t *testing.T) {
				ok := frame('Z', []byte{'I'})
				bad := []byte{'Q', byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n), 'x', 'y'}
				data := append(append([]byte(nil), ok...), bad...)

				rd := NewReader(&chunkReader{data: data, next: sp.new()}, 64)
				if f, err := rd.ReadFrame(100); err != nil || !bytes.Equal(f, ok) {
					t.Fatalf("first frame: %q, %v", f, err)
				}
				if _, err := rd.ReadFrame(100); err != ErrBadLength {
					t.Fatalf("ReadFrame: %v, want ErrBadLength", err)
				}
				typ, _, hok, err := rd.Header(0)
				if !hok || typ != 'Q' || err != ErrBadLength {
					t.Fatalf("Header: %c %v %v, want Q true ErrBadLength", typ, hok, err)
				}

				rd = NewReader(&chunkReader{data: data, next: sp.new()}, 64)
				if err := forwardAll(rd, io.Discard, nil); err != ErrBadLength {
					t.Fatalf("relay: %v, want ErrBadLength", err)
				}
			})
		}
	}

	t.Run("len=4 is an empty body", func(t *testing.T) {
		rd := NewReader(bytes.NewReader([]byte{'H', 0, 0, 0, 4}), 8)
		f, err := rd.ReadFrame(5)
		if err != nil || !bytes.Equal(f, []byte{'H', 0, 0, 0, 4}) {
			t.Fatalf("%q, %v", f, err)
		}
	})

	t.Run("length over 1GiB", func(t *testing.T) {
		for _, n := range []uint32{maxLength + 1, 1<<31 - 1, 1 << 31, 1<<32 - 1} {
			rd := NewReader(bytes.NewReader([]byte{'D', byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), 8)
			if _, err := rd.ReadFrame(math.MaxInt); !errors.Is(err, ErrFrameTooLarge) {
				t.Fatalf("len %d: %v, want ErrFrameTooLarge", n, err)
			}
			if _, total, ok, err := rd.Header(0); !ok || total != 0 || err != ErrFrameTooLarge {
				t.Fatalf("len %d: Header %d %v %v", n, total, ok, err)
			}
		}
		rd := NewReader(bytes.NewReader([]byte{'D', 0x40, 0, 0, 0}), 8)
		if err := rd.Fill(0); err != nil {
			t.Fatal(err)
		}
		if _, total, ok, err := rd.Header(0); !ok || err != nil || total != maxLength+1 {
			t.Fatalf("len 1GiB: Header %d %v %v", total, ok, err)
		}
	})
}

// countReader counts the bytes read from it.
type countReader struct {
	r io.Reader
	n int
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestReadFrameLimit(t *testing.T) {
	const size = 64
	huge := frame('P', body(100000, 1))
	for _, tc := range []struct {
		name   string
		frames [][]byte
		max    int
		skip   int // frames read fine before the one refused
	}{
		{"first frame", [][]byte{huge}, 8192, 0},
		{"after small frames", [][]byte{frame('S', nil), frame('Q', body(30, 2)), huge}, 8192, 2},
		{"one byte over", [][]byte{frame('Q', body(1000, 3))}, 1004, 0},
	} {
		for _, sp := range splitters {
			t.Run(tc.name+"/"+sp.name, func(t *testing.T) {
				data := concat(tc.frames)
				src := &countReader{r: &chunkReader{data: data, next: sp.new()}}
				rd := NewReader(src, size)
				for i := range tc.skip {
					if f, err := rd.ReadFrame(tc.max); err != nil || !bytes.Equal(f, tc.frames[i]) {
						t.Fatalf("frame %d: %v", i, err)
					}
				}
				_, err := rd.ReadFrame(tc.max)
				if !errors.Is(err, ErrFrameTooLarge) {
					t.Fatalf("%v, want ErrFrameTooLarge", err)
				}
				if len(rd.Buf()) != size {
					t.Fatalf("buffer grew to %d bytes for a refused frame", len(rd.Buf()))
				}
				// Nothing past the buffer's worth of the refused frame was read.
				consumed := len(concat(tc.frames[:tc.skip]))
				if src.n > consumed+size {
					t.Fatalf("read %d bytes, at most %d expected", src.n, consumed+size)
				}
				if _, err := rd.ReadFrame(tc.max); !errors.Is(err, ErrFrameTooLarge) {
					t.Fatalf("again: %v, want ErrFrameTooLarge", err)
				}
			})
		}
	}

	t.Run("exactly the limit", func(t *testing.T) {
		f := frame('Q', body(1000, 3))
		rd := NewReader(bytes.NewReader(f), size)
		got, err := rd.ReadFrame(len(f))
		if err != nil || !bytes.Equal(got, f) {
			t.Fatalf("%v", err)
		}
	})
}

func TestGrowShrink(t *testing.T) {
	const size = 16
	base := func(rd *Reader) *byte { return &rd.Buf()[0] }

	t.Run("ReadFrame", func(t *testing.T) {
		big := frame('D', body(1000, 5))
		small := frame('Z', []byte{'I'})
		for _, sp := range splitters {
			data := concat([][]byte{small, big, small, big, big, small})
			rd := NewReader(&chunkReader{data: data, next: sp.new()}, size)
			orig := base(rd)
			for i, want := range [][]byte{small, big, small, big, big, small} {
				got, err := rd.ReadFrame(1 << 20)
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("%s: frame %d: %v", sp.name, i, err)
				}
				if len(want) > size && len(rd.Buf()) < len(want) {
					t.Fatalf("%s: frame %d: buffer is %d bytes", sp.name, i, len(rd.Buf()))
				}
				if len(want) <= size && (len(rd.Buf()) != size || base(rd) != orig) {
					t.Fatalf("%s: frame %d: buffer is %d bytes, not the original %d", sp.name, i, len(rd.Buf()), size)
				}
			}
			if _, err := rd.ReadFrame(1 << 20); err != io.EOF {
				t.Fatalf("%s: %v, want io.EOF", sp.name, err)
			}
			if len(rd.Buf()) != size || base(rd) != orig {
				t.Fatalf("%s: buffer not back to the configured one", sp.name)
			}
		}
	})

	t.Run("Fill keeps buffered bytes when shrinking", func(t *testing.T) {
		big := frame('D', body(100, 6))
		tail := frame('C', body(4, 7))
		data := concat([][]byte{big, tail, body(100, 8)})
		rd := NewReaderBuf(bytes.NewReader(data), make([]byte, size))
		orig := base(rd)
		// Grow by more than the frame needs, so that the tail comes along.
		grown := len(big) + len(tail)
		for rd.Buffered() < grown {
			if err := rd.Fill(grown); err != nil {
				t.Fatal(err)
			}
		}
		if len(rd.Buf()) != grown {
			t.Fatalf("buffer is %d bytes, want %d", len(rd.Buf()), grown)
		}
		f, err := rd.ReadFrame(1 << 10)
		if err != nil || !bytes.Equal(f, big) {
			t.Fatalf("big: %v", err)
		}
		if err := rd.Fill(0); err != nil {
			t.Fatal(err)
		}
		if len(rd.Buf()) != size || base(rd) != orig {
			t.Fatalf("buffer is %d bytes, not the original %d", len(rd.Buf()), size)
		}
		f, err = rd.ReadFrame(1 << 10)
		if err != nil || !bytes.Equal(f, tail) {
			t.Fatalf("tail: %q, %v", f, err)
		}
	})

	t.Run("no shrink while want needs the large buffer", func(t *testing.T) {
		rd := NewReader(&chunkReader{data: body(200, 1), next: func(int) int { return 10 }}, size)
		for rd.Buffered() < 20 {
			if err := rd.Fill(100); err != nil {
				t.Fatal(err)
			}
		}
		grown := len(rd.Buf())
		if grown <= size {
			t.Fatalf("buffer %d bytes, did not grow", grown)
		}
		if err := rd.Fill(100); err != nil {
			t.Fatal(err)
		}
		if len(rd.Buf()) < grown || rd.Buffered() < 20 {
			t.Fatalf("buffer %d bytes (was %d), %d buffered", len(rd.Buf()), grown, rd.Buffered())
		}
		if !bytes.Equal(rd.Bytes(), body(200, 1)[:rd.Buffered()]) {
			t.Fatal("buffered bytes differ")
		}
	})

	t.Run("grows as bytes arrive, not as announced", func(t *testing.T) {
		hdr := []byte{'Q', 0, 0, 0, 0}
		binary.BigEndian.PutUint32(hdr[1:], 60<<20)
		data := append(hdr, body(3*size, 2)...)
		rd := NewReader(&chunkReader{data: data, next: func(int) int { return 7 }}, size)
		_, err := rd.ReadFrame(64 << 20)
		if err != io.ErrUnexpectedEOF {
			t.Fatalf("%v, want io.ErrUnexpectedEOF", err)
		}
		if got := len(rd.Buf()); got > 2*len(data) {
			t.Fatalf("a frame announcing 60 MiB with %d bytes sent grew the buffer to %d bytes", len(data), got)
		}
	})

	t.Run("Reset", func(t *testing.T) {
		rd := NewReader(bytes.NewReader(frame('D', body(100, 1))), size)
		orig := base(rd)
		if _, err := rd.ReadFrame(1 << 10); err != nil {
			t.Fatal(err)
		}
		if len(rd.Buf()) == size {
			t.Fatal("buffer did not grow")
		}
		rd.Reset(bytes.NewReader(nil))
		if len(rd.Buf()) != size || base(rd) != orig || rd.Buffered() != 0 {
			t.Fatal("Reset did not go back to the original buffer")
		}
		if allocs := testing.AllocsPerRun(10, func() { rd.Reset(nil) }); allocs != 0 {
			t.Fatalf("Reset allocates %v times", allocs)
		}
	})
}

func TestEOF(t *testing.T) {
	f1 := frame('T', body(10, 1))
	f2 := frame('D', body(30, 2))
	full := concat([][]byte{f1, f2})
	for _, tc := range []struct {
		name   string
		data   []byte
		frames int
		want   error
	}{
		{"empty", nil, 0, io.EOF},
		{"at a boundary", full, 2, io.EOF},
		{"inside the first header", full[:1], 0, io.ErrUnexpectedEOF},
		{"inside the first header, 4 bytes", full[:4], 0, io.ErrUnexpectedEOF},
		{"after the first header", full[:HeaderLen], 0, io.ErrUnexpectedEOF},
		{"inside the first body", full[:len(f1)-1], 0, io.ErrUnexpectedEOF},
		{"inside the second header", full[:len(f1)+2], 1, io.ErrUnexpectedEOF},
		{"inside the second body", full[:len(full)-1], 1, io.ErrUnexpectedEOF},
	} {
		for _, sp := range splitters {
			for _, dataEOF := range []bool{false, true} {
				for _, size := range []int{4, 16, 4096} {
					name := fmt.Sprintf("%s/%s/dataEOF=%v/buf=%d", tc.name, sp.name, dataEOF, size)
					t.Run(name, func(t *testing.T) {
						rd := NewReader(&chunkReader{data: tc.data, next: sp.new(), dataEOF: dataEOF}, size)
						for i := range tc.frames {
							if _, err := rd.ReadFrame(1 << 10); err != nil {
								t.Fatalf("frame %d: %v", i, err)
							}
						}
						if _, err := rd.ReadFrame(1 << 10); err != tc.want {
							t.Fatalf("ReadFrame: %v, want %v", err, tc.want)
						}
						if size >= HeaderLen {
							rd := NewReader(&chunkReader{data: tc.data, next: sp.new(), dataEOF: dataEOF}, size)
							want := tc.want
							if want == io.EOF {
								want = nil
							}
							if err := forwardAll(rd, io.Discard, nil); err != want {
								t.Fatalf("relay: %v, want %v", err, want)
							}
						}
					})
				}
			}
		}
	}

	t.Run("other errors pass through", func(t *testing.T) {
		boom := errors.New("boom")
		for _, cut := range []int{0, 2, len(f1), len(f1) + 7} {
			rd := NewReader(&chunkReader{data: full[:cut], next: func(int) int { return 3 }, err: boom}, 16)
			var err error
			for err == nil {
				_, err = rd.ReadFrame(1 << 10)
			}
			if err != boom {
				t.Fatalf("cut %d: %v, want boom", cut, err)
			}
		}
	})
}

func TestHeaderBounds(t *testing.T) {
	rd := NewReader(bytes.NewReader(concat([][]byte{frame('Z', []byte{'I'}), {'D', 0, 0}})), 64)
	if err := rd.Fill(0); err != nil {
		t.Fatal(err)
	}
	if rd.Buffered() != 9 {
		t.Fatalf("buffered %d", rd.Buffered())
	}
	for _, tc := range []struct {
		off   int
		ok    bool
		typ   byte
		total int
	}{
		{-1, false, 0, 0},
		{0, true, 'Z', 6},
		{6, false, 0, 0},
		{8, false, 0, 0},
		{9, false, 0, 0},
		{10, false, 0, 0},
		{math.MaxInt, false, 0, 0},
		{math.MinInt, false, 0, 0},
	} {
		typ, total, ok, err := rd.Header(tc.off)
		if ok != tc.ok || typ != tc.typ || total != tc.total || err != nil {
			t.Fatalf("Header(%d) = %c %d %v %v, want %c %d %v", tc.off, typ, total, ok, err, tc.typ, tc.total, tc.ok)
		}
	}
	rd.Discard(6)
	if _, _, ok, _ := rd.Header(0); ok {
		t.Fatal("partial header reported")
	}
	if _, _, ok, _ := rd.Header(3); ok {
		t.Fatal("offset at the end reported a header")
	}
}

func TestDiscardOutOfRange(t *testing.T) {
	for _, n := range []int{-1, 5} {
		func() {
			defer func() {
				if recover() == nil {
					t.Fatalf("Discard(%d) did not panic", n)
				}
			}()
			rd := NewReader(bytes.NewReader([]byte("abcd")), 8)
			if err := rd.Fill(0); err != nil {
				t.Fatal(err)
			}
			rd.Discard(n)
		}()
	}
	rd := NewReader(bytes.NewReader([]byte("abcd")), 8)
	if err := rd.Fill(0); err != nil {
		t.Fatal(err)
	}
	rd.Discard(4)
	if rd.Buffered() != 0 {
		t.Fatal("Discard(4) left bytes")
	}
}

func TestFill(t *testing.T) {
	t.Run("compacts", func(t *testing.T) {
		rd := NewReader(&chunkReader{data: []byte("abcdefghijkl"), next: func(int) int { return 6 }}, 8)
		if err := rd.Fill(0); err != nil {
			t.Fatal(err)
		}
		rd.Discard(4)
		if err := rd.Fill(0); err != nil {
			t.Fatal(err)
		}
		if string(rd.Bytes()) != "efghijkl" {
			t.Fatalf("buffered %q", rd.Bytes())
		}
	})

	t.Run("buffer full", func(t *testing.T) {
		rd := NewReader(bytes.NewReader([]byte("abcdefghijkl")), 8)
		if err := rd.Fill(0); err != nil {
			t.Fatal(err)
		}
		if err := rd.Fill(8); err != ErrBufferFull {
			t.Fatalf("%v, want ErrBufferFull", err)
		}
		if err := rd.Fill(9); err != nil {
			t.Fatal(err)
		}
		if string(rd.Bytes()) != "abcdefghi" {
			t.Fatalf("buffered %q", rd.Bytes())
		}
	})

	t.Run("empty reads", func(t *testing.T) {
		n := 0
		rd := NewReader(&chunkReader{data: []byte("ab"), next: func(int) int {
			n++
			if n < 50 {
				return 0
			}
			return 1
		}}, 8)
		if err := rd.Fill(0); err != nil || string(rd.Bytes()) != "a" {
			t.Fatalf("%q, %v", rd.Bytes(), err)
		}
		rd = NewReader(&chunkReader{data: []byte("ab"), next: func(int) int { return 0 }}, 8)
		if err := rd.Fill(0); err != io.ErrNoProgress {
			t.Fatalf("%v, want io.ErrNoProgress", err)
		}
	})

	t.Run("error after data", func(t *testing.T) {
		boom := errors.New("boom")
		rd := NewReader(iotest.DataErrReader(&chunkReader{data: []byte("abc"), next: func(l int) int { return l }, err: boom}), 8)
		if err := rd.Fill(0); err != nil || string(rd.Bytes()) != "abc" {
			t.Fatalf("%q, %v", rd.Bytes(), err)
		}
		if err := rd.Fill(0); err != boom {
			t.Fatalf("%v, want boom", err)
		}
		rd.Reset(bytes.NewReader([]byte("x")))
		if err := rd.Fill(0); err != nil || string(rd.Bytes()) != "x" {
			t.Fatalf("after Reset: %q, %v", rd.Bytes(), err)
		}
	})

	t.Run("bad reader count", func(t *testing.T) {
		rd := NewReader(badReader{}, 8)
		if err := rd.Fill(0); err == nil {
			t.Fatal("no error")
		}
	})
}

type badReader struct{}

func (badReader) Read(p []byte) (int, error) { return len(p) + 1, nil }

func TestDetachAttach(t *testing.T) {
	r := NewReader(strings.NewReader("abcdef"), 4)
	if err := r.Fill(0); err != nil {
		t.Fatal(err)
	}
	if b := r.Detach(); b != nil {
		t.Fatal("detached a buffer holding unread bytes")
	}
	r.Discard(r.Buffered())
	b := r.Detach()
	if len(b) != 4 {
		t.Fatalf("detached %d bytes", len(b))
	}
	if r.Detach() != nil {
		t.Fatal("detached twice")
	}
	r.Attach(make([]byte, 8))
	if err := r.Fill(0); err != nil || string(r.Bytes()) != "ef" {
		t.Fatalf("after Attach: %q %v", r.Bytes(), err)
	}
}
