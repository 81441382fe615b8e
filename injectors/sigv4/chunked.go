package sigv4

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"

	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/internal/grow"
)

// Payload hash values of aws-chunked and other S3 payload modes.
const (
	streamingPayload        = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
	streamingPayloadTrailer = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
	streamingUnsigned       = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
	unsignedPayload         = "UNSIGNED-PAYLOAD"
	emptySHA256             = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)

// maxChunkLine bounds a chunk header or trailer line: a size, a
// 64-digit signature and a little slack.
const maxChunkLine = 4096

// errMalformedChunk: the client's aws-chunked body is not well formed.
var errMalformedChunk = errors.New("sigv4: malformed aws-chunked body")

// signingKey derives the SigV4 signing key for a date (YYYYMMDD),
// region and service.
func signingKey(secret, date, region, service string) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), date)
	k = hmacSHA256(k, region)
	k = hmacSHA256(k, service)
	return hmacSHA256(k, "aws4_request")
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

// chunkSigner computes the chained chunk and trailer signatures of one
// aws-chunked upload (https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html).
// It holds the derived signing key, never the secret key.
type chunkSigner struct {
	mac       hash.Hash // HMAC-SHA256 with the signing key
	amzDate   string    // the request's X-Amz-Date
	scope     string    // date/region/service/aws4_request
	prev      string    // the previous signature (the seed first)
	sum       [sha256.Size]byte
	scratch   []byte
	sigBuffer [sha256.Size]byte
}

func newChunkSigner(key []byte, amzDate, scope, seed string) *chunkSigner {
	return &chunkSigner{mac: hmac.New(sha256.New, key), amzDate: amzDate, scope: scope, prev: seed}
}

// sign returns the signature of the next piece: "AWS4-HMAC-SHA256-PAYLOAD"
// for a chunk (hash is the chunk data's SHA-256), "AWS4-HMAC-SHA256-TRAILER"
// for the trailing headers (hash of their "name:value\n" lines).
func (s *chunkSigner) sign(algorithm string, dataHash []byte) string {
	b := s.scratch[:0]
	b = append(b, algorithm...)
	b = append(b, '\n')
	b = append(b, s.amzDate...)
	b = append(b, '\n')
	b = append(b, s.scope...)
	b = append(b, '\n')
	b = append(b, s.prev...)
	b = append(b, '\n')
	if algorithm == "AWS4-HMAC-SHA256-PAYLOAD" {
		b = append(b, emptySHA256...)
		b = append(b, '\n')
	}
	b = hex.AppendEncode(b, dataHash)
	s.scratch = b
	s.mac.Reset()
	s.mac.Write(b)
	s.prev = hex.EncodeToString(s.mac.Sum(s.sigBuffer[:0]))
	return s.prev
}

// chunkedBody re-signs an aws-chunked body on the fly: it reads one chunk
// of the client's body at a time (at most maxChunk bytes held, and never
// much more than the bytes received: see readData), replaces
// its chunk-signature (and the trailer signature) with one chained from
// the gateway's seed signature, and passes everything else through byte
// for byte, so the length, and Content-Length, do not change.
type chunkedBody struct {
	src      io.ReadCloser
	r        *bufio.Reader
	s        *chunkSigner
	trailer  bool // the -TRAILER variant: trailing headers follow the last chunk
	maxChunk int

	// Pending output, returned by Read in this order: the chunk header,
	// the chunk data (c.data itself, not a copy), the tail (CRLF or the
	// trailers). head and tail reuse their arrays.
	head, body, tail []byte
	headBuf, tailBuf []byte
	data             []byte // the current chunk's data (reused)
	done             bool   // the last chunk and trailers were queued; pass the rest through
	err              error
}

func newChunkedBody(src io.ReadCloser, s *chunkSigner, trailer bool, maxChunk int) *chunkedBody {
	return &chunkedBody{src: src, r: bufio.NewReaderSize(src, 32<<10), s: s, trailer: trailer, maxChunk: maxChunk}
}

// Read implements io.Reader.
func (c *chunkedBody) Read(p []byte) (int, error) {
	for len(c.head)+len(c.body)+len(c.tail) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		if c.done {
			return c.r.Read(p)
		}
		c.err = c.next()
	}
	n := 0
	for _, seg := range []*[]byte{&c.head, &c.body, &c.tail} {
		k := copy(p[n:], *seg)
		*seg = (*seg)[k:]
		n += k
		if n == len(p) {
			break
		}
	}
	return n, nil
}

// Close closes the client's body.
func (c *chunkedBody) Close() error { return c.src.Close() }

// readLine returns one CRLF-terminated line without the CRLF.
func (c *chunkedBody) readLine() ([]byte, error) {
	line, err := c.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) || len(line) > maxChunkLine {
		return nil, fmt.Errorf("%w: line longer than %d bytes", errMalformedChunk, maxChunkLine)
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("sigv4: read aws-chunked body: %w", err)
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("%w: line not ended by CRLF", errMalformedChunk)
	}
	return line[:len(line)-2], nil
}

// minChunkBuf is the first allocation for a chunk's data; the buffer
// then doubles as data arrives.
const minChunkBuf = 32 << 10

// readData reads the size bytes of the current chunk's data into c.data.
// The chunk's signature comes before its data, so a chunk is held whole;
// but memory follows the bytes received, not the size the client
// declared: the buffer starts at minChunkBuf (or what earlier chunks
// left) and at most doubles, so a client that declares max_chunk_size and
// sends a few bytes holds minChunkBuf, not max_chunk_size.
func (c *chunkedBody) readData(size int) error {
	var err error
	if c.data, err = grow.ReadFull(c.r, c.data, size, minChunkBuf); err != nil {
		return fmt.Errorf("sigv4: read aws-chunked body: %w", err)
	}
	return nil
}

// next reads one chunk (or the last chunk and its trailers) and queues
// its re-signed form in c.out.
func (c *chunkedBody) next() error {
	line, err := c.readLine()
	if err != nil {
		return err
	}
	sizeText, ext, ok := bytes.Cut(line, []byte(";"))
	if !ok || !bytes.HasPrefix(ext, []byte("chunk-signature=")) || len(ext) != len("chunk-signature=")+64 {
		return fmt.Errorf("%w: chunk header without a chunk-signature", errMalformedChunk)
	}
	size, err := strconv.ParseUint(string(sizeText), 16, 63)
	if err != nil {
		return fmt.Errorf("%w: chunk size is not hexadecimal", errMalformedChunk)
	}
	if size > uint64(c.maxChunk) {
		return fmt.Errorf("sigv4: aws-chunked chunk of %d bytes, more than max_chunk_size %d: %w", size, c.maxChunk, injectors.ErrBodyTooLarge)
	}
	// sizeText points into the reader's buffer: copy it before reading on.
	head := append(c.headBuf[:0], sizeText...)
	if err := c.readData(int(size)); err != nil {
		return err
	}
	c.s.sum = sha256.Sum256(c.data)
	sig := c.s.sign("AWS4-HMAC-SHA256-PAYLOAD", c.s.sum[:])

	head = append(head, ";chunk-signature="...)
	head = append(head, sig...)
	head = append(head, '\r', '\n')
	c.headBuf, c.head = head, head
	tail := c.tailBuf[:0]
	if size > 0 {
		if _, err := c.readLine(); err != nil { // the CRLF after the data
			return err
		}
		c.body = c.data
		tail = append(tail, '\r', '\n')
		c.tailBuf, c.tail = tail, tail
		return nil
	}
	// The last chunk. Without trailers, what follows (the final CRLF) is
	// passed through. With trailers: "name:value" lines, then the trailer
	// signature line, which is re-signed.
	if c.trailer {
		h := sha256.New()
		for n := 0; ; n++ {
			if n > 64 {
				return fmt.Errorf("%w: too many trailing headers", errMalformedChunk)
			}
			line, err := c.readLine()
			if err != nil {
				return err
			}
			if bytes.HasPrefix(line, []byte("x-amz-trailer-signature:")) {
				break
			}
			if len(line) == 0 {
				return fmt.Errorf("%w: trailing headers without x-amz-trailer-signature", errMalformedChunk)
			}
			h.Write(line)
			h.Write([]byte{'\n'})
			tail = append(tail, line...)
			tail = append(tail, '\r', '\n')
		}
		sig := c.s.sign("AWS4-HMAC-SHA256-TRAILER", h.Sum(c.s.sum[:0]))
		tail = append(tail, "x-amz-trailer-signature:"...)
		tail = append(tail, sig...)
		tail = append(tail, '\r', '\n')
	}
	c.tailBuf, c.tail = tail, tail
	c.done = true
	c.data = nil
	return nil
}
