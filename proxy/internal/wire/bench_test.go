package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// forwardStep is one turn of the relay loop the proxy runs (see the pump in
// proxy/session.go): one Fill, then the run of complete frames at the front
// of the buffer is written with one write, or a frame larger than the
// buffer is streamed through. seen, if not nil, is called for each frame
// forwarded (for a run, before the run is written). The end of the source
// is io.EOF at a frame boundary and io.ErrUnexpectedEOF inside a frame.
func forwardStep(rd *Reader, dst io.Writer, seen func(typ byte, total int)) error {
	if err := rd.Fill(0); err != nil {
		if err == io.EOF && rd.Buffered() > 0 {
			return io.ErrUnexpectedEOF
		}
		return err
	}
	pos := 0
	for {
		typ, total, ok, err := rd.Header(pos)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if pos+total > rd.Buffered() {
			if pos == 0 && total > len(rd.Buf()) {
				if err := rd.StreamBody(dst, total); err != nil {
					return err
				}
				if seen != nil {
					seen(typ, total)
				}
				return nil
			}
			break
		}
		if seen != nil {
			seen(typ, total)
		}
		pos += total
	}
	if pos > 0 {
		if _, err := dst.Write(rd.Bytes()[:pos]); err != nil {
			return err
		}
		rd.Discard(pos)
	}
	return nil
}

// forwardAll runs forwardStep until the source ends. A clean end returns nil.
func forwardAll(rd *Reader, dst io.Writer, seen func(typ byte, total int)) error {
	for {
		if err := forwardStep(rd, dst, seen); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}

// dataRows returns n DataRow frames of size bytes each (header included).
func dataRows(n, size int) []byte {
	row := make([]byte, size)
	row[0] = 'D'
	putLen(row, size-1)
	for i := HeaderLen; i < size; i++ {
		row[i] = byte(i)
	}
	return bytes.Repeat(row, n)
}

func putLen(b []byte, n int) {
	b[1], b[2], b[3], b[4] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
}

// readerOnly hides WriterTo so that io.Copy has to loop over Read.
type readerOnly struct{ io.Reader }

func BenchmarkForward(b *testing.B) {
	data := dataRows(10000, 40)
	for _, bc := range []struct {
		name string
		size int
	}{
		{"buf=8K", 8 << 10},
		{"buf=32K", 32 << 10},
	} {
		b.Run(bc.name, func(b *testing.B) {
			src := bytes.NewReader(data)
			rd := NewReader(src, bc.size)
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				src.Reset(data)
				rd.Reset(src)
				if err := forwardAll(rd, io.Discard, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkIOCopy(b *testing.B) {
	data := dataRows(10000, 40)
	b.Run("bytesReader", func(b *testing.B) {
		src := bytes.NewReader(data)
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			src.Reset(data)
			if _, err := io.Copy(io.Discard, src); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("readerOnly", func(b *testing.B) {
		src := bytes.NewReader(data)
		ro := &readerOnly{src}
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			src.Reset(data)
			if _, err := io.Copy(io.Discard, ro); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// repeatReader returns its pattern over and over, never ending.
type repeatReader struct {
	pat []byte
	off int
	max int // bytes per Read; 0 means no limit
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.max > 0 && len(p) > r.max {
		p = p[:r.max]
	}
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.pat[r.off:])
		n += c
		r.off = (r.off + c) % len(r.pat)
	}
	return n, nil
}

// countWriter counts bytes and frames without keeping them.
type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}

func TestForwardAllocs(t *testing.T) {
	big := dataRows(1, 100<<10) // larger than the buffer: streamed
	for _, tc := range []struct {
		name string
		pat  []byte
		max  int
	}{
		{"small rows", dataRows(1000, 40), 0},
		{"small rows, short reads", dataRows(1000, 40), 1000},
		{"odd rows", dataRows(777, 33), 0},
		{"with big row", append(dataRows(500, 40), big...), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := &repeatReader{pat: tc.pat, max: tc.max}
			rd := NewReader(src, 32<<10)
			w := &countWriter{}
			frames := 0
			seen := func(byte, int) { frames++ }
			step := func() {
				if err := forwardStep(rd, w, seen); err != nil {
					t.Fatal(err)
				}
			}
			for range 100 { // warm up
				step()
			}
			before := w.n
			if allocs := testing.AllocsPerRun(1000, step); allocs != 0 {
				t.Fatalf("%v allocations per forwarded batch, want 0", allocs)
			}
			if w.n == before || frames == 0 {
				t.Fatalf("nothing forwarded")
			}
			if len(rd.Buf()) != 32<<10 {
				t.Fatalf("buffer is %d bytes, want %d", len(rd.Buf()), 32<<10)
			}
		})
	}
}

// TestForwardOutput checks that the benchmark's relay loop forwards the
// stream byte-exact, so that the numbers measure real work.
func TestForwardOutput(t *testing.T) {
	data := append(dataRows(1000, 40), dataRows(1, 100<<10)...)
	data = append(data, dataRows(10, 7)...)
	for _, size := range []int{HeaderLen, 64, 8 << 10, 32 << 10} {
		var out bytes.Buffer
		frames := 0
		err := forwardAll(NewReader(bytes.NewReader(data), size), &out, func(byte, int) { frames++ })
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if !bytes.Equal(out.Bytes(), data) {
			t.Fatalf("size %d: output differs", size)
		}
		if frames != 1011 {
			t.Fatalf("size %d: %d frames, want 1011", size, frames)
		}
	}
	err := forwardAll(NewReader(bytes.NewReader(data[:len(data)-3]), 64), io.Discard, nil)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated stream: %v, want io.ErrUnexpectedEOF", err)
	}
}

// selectResponse is what PostgreSQL answers to one pgbench select-only
// query (simple protocol): RowDescription, one DataRow, CommandComplete and
// ReadyForQuery, 66 bytes in all.
func selectResponse() []byte {
	frame := func(typ byte, body []byte) []byte {
		f := make([]byte, HeaderLen, HeaderLen+len(body))
		f[0] = typ
		putLen(f, 4+len(body))
		return append(f, body...)
	}
	rowDesc := append([]byte{0, 1}, "abalance\x00"...)
	rowDesc = append(rowDesc, 0, 0, 0x40, 0x08, 0, 3, 0, 0, 0, 23, 0, 4, 0xff, 0xff, 0xff, 0xff, 0, 0)
	var out []byte
	out = append(out, frame('T', rowDesc)...)
	out = append(out, frame('D', []byte{0, 1, 0, 0, 0, 1, '0'})...)
	out = append(out, frame('C', []byte("SELECT 1\x00"))...)
	out = append(out, frame('Z', []byte{'I'})...)
	return out
}

// BenchmarkForwardPerResponse forwards one small response per read, as the
// relay does in request/response traffic (every read from the socket
// returns one answer): the per-message cost of forwarding, against
// io.CopyBuffer moving the same reads without looking at them.
func BenchmarkForwardPerResponse(b *testing.B) {
	resp := selectResponse()
	b.Run("forward", func(b *testing.B) {
		rd := NewReader(&repeatReader{pat: resp, max: len(resp)}, 8<<10)
		w := &countWriter{}
		b.ReportAllocs()
		b.SetBytes(int64(len(resp)))
		for b.Loop() {
			if err := forwardStep(rd, w, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("forward+inspect", func(b *testing.B) {
		// The relay looks at every header to find ReadyForQuery and its
		// transaction status.
		rd := NewReader(&repeatReader{pat: resp, max: len(resp)}, 8<<10)
		w := &countWriter{}
		idle := 0
		seen := func(typ byte, total int) {
			if typ == 'Z' {
				idle++
			}
		}
		b.ReportAllocs()
		b.SetBytes(int64(len(resp)))
		for b.Loop() {
			if err := forwardStep(rd, w, seen); err != nil {
				b.Fatal(err)
			}
		}
		if idle == 0 {
			b.Fatal("no ReadyForQuery seen")
		}
	})
	b.Run("io.CopyBuffer", func(b *testing.B) {
		src := &io.LimitedReader{R: &repeatReader{pat: resp, max: len(resp)}, N: int64(b.N) * int64(len(resp))}
		w := &countWriter{}
		buf := make([]byte, 8<<10)
		b.ReportAllocs()
		b.SetBytes(int64(len(resp)))
		b.ResetTimer()
		if _, err := io.CopyBuffer(struct{ io.Writer }{w}, src, buf); err != nil {
			b.Fatal(err)
		}
	})
}

func TestSelectResponseFrames(t *testing.T) {
	resp := selectResponse()
	var types []byte
	err := forwardAll(NewReader(bytes.NewReader(resp), 64), io.Discard, func(typ byte, total int) { types = append(types, typ) })
	if err != nil || string(types) != "TDCZ" || len(resp) != 66 {
		t.Fatalf("frames %q (%v), %d bytes", types, err, len(resp))
	}
	// One response per read forwards without allocating.
	rd := NewReader(&repeatReader{pat: resp, max: len(resp)}, 8<<10)
	if n := testing.AllocsPerRun(1000, func() { _ = forwardStep(rd, io.Discard, nil) }); n != 0 {
		t.Fatalf("%v allocations per response", n)
	}
}
