package wire

import (
	"bytes"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"testing"
)

// refParse splits data into frames the simple way: it is the reference the
// Reader is checked against. It returns the frames up to the first error
// and that error (io.EOF for a clean end).
func refParse(data []byte, max int) ([][]byte, error) {
	var frames [][]byte
	for {
		if len(data) == 0 {
			return frames, io.EOF
		}
		if len(data) < 5 {
			return frames, io.ErrUnexpectedEOF
		}
		n := uint32(data[1])<<24 | uint32(data[2])<<16 | uint32(data[3])<<8 | uint32(data[4])
		if n < 4 {
			return frames, ErrBadLength
		}
		if n > 1<<30 {
			return frames, ErrFrameTooLarge
		}
		total := int(n) + 1
		if total > max {
			return frames, ErrFrameTooLarge
		}
		if len(data) < total {
			return frames, io.ErrUnexpectedEOF
		}
		frames = append(frames, data[:total])
		data = data[total:]
	}
}

// randReader hands out data in random pieces, with empty reads now and
// then, and, if dataEOF, io.EOF along with the last piece.
type randReader struct {
	data     []byte
	rng      *rand.Rand
	maxChunk int
	dataEOF  bool
	empties  int
}

func (r *randReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	n := r.rng.IntN(r.maxChunk + 1)
	if n == 0 && r.empties < 3 {
		r.empties++
		return 0, nil
	}
	r.empties = 0
	n = min(max(n, 1), len(p), len(r.data))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	if len(r.data) == 0 && r.dataEOF {
		return n, io.EOF
	}
	return n, nil
}

func newRandReader(data []byte, seed uint64) *randReader {
	rng := rand.New(rand.NewPCG(seed, seed>>32|1))
	chunks := []int{1, 2, 3, 7, 64, 1 << 20}
	return &randReader{
		data:     data,
		rng:      rng,
		maxChunk: chunks[seed%uint64(len(chunks))],
		dataEOF:  seed&(1<<8) != 0,
	}
}

func sameErr(got, want error) bool {
	if want == ErrFrameTooLarge {
		return errors.Is(got, ErrFrameTooLarge)
	}
	return got == want
}

func FuzzReader(f *testing.F) {
	f.Add(dataRows(20, 40), uint64(0), uint8(32), uint16(8192))
	f.Add(append(frame('D', body(300, 1)), frame('Z', []byte{'I'})...), uint64(1), uint8(16), uint16(200))

	f.Fuzz(func(t *testing.T, data []byte, seed uint64, size uint8, limit uint16) {
		// ReadFrame, with a limit.
		{
			want, wantErr := refParse(data, int(limit))
			rd := NewReader(newRandReader(data, seed), int(size%64))
			for i := 0; ; i++ {
				got, err := rd.ReadFrame(int(limit))
				if err != nil {
					if i != len(want) || !sameErr(err, wantErr) {
						t.Fatalf("ReadFrame: %v after %d frames, want %v after %d", err, i, wantErr, len(want))
					}
					if _, err := rd.ReadFrame(int(limit)); err == nil {
						t.Fatalf("ReadFrame succeeded after %v", wantErr)
					}
					break
				}
				if i >= len(want) {
					t.Fatalf("ReadFrame: frame %d, the reference has %d", i, len(want))
				}
				if !bytes.Equal(got, want[i]) {
					t.Fatalf("ReadFrame: frame %d differs: %x, want %x", i, got, want[i])
				}
			}
			if wantErr == io.EOF && int(size%64) >= HeaderLen && len(rd.Buf()) != int(size%64) {
				t.Fatalf("buffer is %d bytes at the end, want %d", len(rd.Buf()), size%64)
			}
		}

		// The relay loop: Header scanning, runs of frames, StreamBody.
		{
			want, wantErr := refParse(data, math.MaxInt)
			bufSize := HeaderLen + int(size%64)
			rd := NewReader(newRandReader(data, seed), bufSize)
			var out bytes.Buffer
			type seenFrame struct {
				typ   byte
				total int
			}
			var seen []seenFrame
			err := forwardAll(rd, &out, func(typ byte, total int) { seen = append(seen, seenFrame{typ, total}) })
			if err == nil {
				err = io.EOF
			}
			if !sameErr(err, wantErr) {
				t.Fatalf("relay: %v, want %v", err, wantErr)
			}
			if len(seen) != len(want) {
				t.Fatalf("relay: %d frames, want %d", len(seen), len(want))
			}
			for i, s := range seen {
				if s.typ != want[i][0] || s.total != len(want[i]) {
					t.Fatalf("relay: frame %d is %c/%d, want %c/%d", i, s.typ, s.total, want[i][0], len(want[i]))
				}
			}
			all := concat(want)
			if wantErr == io.EOF && !bytes.Equal(out.Bytes(), all) {
				t.Fatalf("relay: output differs")
			}
			if !bytes.HasPrefix(data, out.Bytes()) {
				t.Fatalf("relay: output is not a prefix of the input")
			}
			if len(rd.Buf()) != bufSize {
				t.Fatalf("relay: buffer is %d bytes, want %d", len(rd.Buf()), bufSize)
			}
		}
	})
}
