//go:build !unix

package uds

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// checkDir requires dir to exist and be a directory; ownership is not
// checked on this system.
func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("directory %s does not exist", dir)
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	return nil
}
