package store

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"

	"github.com/dwebkit/dweb/internal/key"
	"golang.org/x/crypto/chacha20poly1305"
)

// Protected is the area of the store that holds secrets (node identity,
// group secrets, owner and repo keys). Each value is sealed with
// XChaCha20-Poly1305 under the device key, with the entry's name as
// associated data, so a value cannot be moved to another name.
//
// The device key comes from the embedding app (a phone's keystore) or, for a
// daemon, from a 0600 file (LoadOrCreateDeviceKey).
type Protected struct {
	db   *DB
	aead aeadSealer
}

type aeadSealer interface {
	Seal(dst, nonce, plaintext, ad []byte) []byte
	Open(dst, nonce, ciphertext, ad []byte) ([]byte, error)
	NonceSize() int
	Overhead() int
}

// ErrProtectedCorrupt is returned when a protected value fails to decrypt:
// the device key is wrong or the value was altered.
var ErrProtectedCorrupt = errors.New("store: protected value does not open (wrong device key or corrupt)")

// Protected returns the protected area sealed under deviceKey.
func (db *DB) Protected(deviceKey key.Secret) *Protected {
	aead, err := chacha20poly1305.NewX(deviceKey[:])
	if err != nil {
		panic("store: XChaCha20-Poly1305 with a 32-byte key failed: " + err.Error())
	}
	return &Protected{db: db, aead: aead}
}

// Put seals value and stores it under name, synced to disk.
func (p *Protected) Put(name string, value []byte) error {
	nonce := make([]byte, p.aead.NonceSize(), p.aead.NonceSize()+len(value)+p.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return fmt.Errorf("store: nonce: %w", err)
	}
	sealed := p.aead.Seal(nonce, nonce, value, []byte(name))
	return p.db.Set(Key(PrefixProt, []byte(name)), sealed, true)
}

// Get returns the value stored under name, ErrNotFound, or
// ErrProtectedCorrupt.
func (p *Protected) Get(name string) ([]byte, error) {
	sealed, err := p.db.Get(Key(PrefixProt, []byte(name)))
	if err != nil {
		return nil, err
	}
	ns := p.aead.NonceSize()
	if len(sealed) < ns+p.aead.Overhead() {
		return nil, fmt.Errorf("%w: %s", ErrProtectedCorrupt, name)
	}
	v, err := p.aead.Open(nil, sealed[:ns], sealed[ns:], []byte(name))
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrProtectedCorrupt, name)
	}
	return v, nil
}

// Delete removes the secret stored under name.
func (p *Protected) Delete(name string) error {
	return p.db.Delete(Key(PrefixProt, []byte(name)), true)
}

// LoadOrCreateDeviceKey reads the 32-byte device key at path, or creates it
// from crypto/rand with mode 0600 if the file does not exist. A file of the
// wrong size or with group/other permissions is an error: it is never
// silently replaced, since that would lock the node out of its secrets.
func LoadOrCreateDeviceKey(path string) (key.Secret, error) {
	var k key.Secret
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if len(b) != key.Size {
			return k, fmt.Errorf("store: device key %s is %d bytes, want %d", path, len(b), key.Size)
		}
		fi, err := os.Stat(path)
		if err != nil {
			return k, err
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return k, fmt.Errorf("store: device key %s has mode %v; it must be readable by its owner only (chmod 600)", path, fi.Mode().Perm())
		}
		copy(k[:], b)
		return k, nil
	case errors.Is(err, os.ErrNotExist):
		k = key.NewSecret()
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return k, fmt.Errorf("store: create device key: %w", err)
		}
		if _, err := f.Write(k[:]); err != nil {
			f.Close()
			return k, fmt.Errorf("store: write device key: %w", err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return k, fmt.Errorf("store: sync device key: %w", err)
		}
		return k, f.Close()
	default:
		return k, fmt.Errorf("store: read device key: %w", err)
	}
}
