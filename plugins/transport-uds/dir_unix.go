//go:build unix

package uds

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// checkDir requires dir to exist, be a directory and belong to this
// process's effective user, so that nobody else controls who may replace
// the socket file.
func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("directory %s does not exist; create it, owned by this server's user", dir)
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if uid := os.Geteuid(); int(st.Uid) != uid {
		return fmt.Errorf("directory %s is owned by uid %d, not by this server's uid %d", dir, st.Uid, uid)
	}
	return nil
}
