# twinpbx developer entry points. CI runs `make test` (see .ci/run).

GO ?= go
OUT ?= out
DATA ?= ./twinpbx-data

.PHONY: all build test e2e deps run clean

all: build

## build: the twinpbx binary into $(OUT)/
build:
	$(GO) build -o $(OUT)/twinpbx ./firmware/twinpbx

## test: every check CI runs (deps, gofmt, vet, staticcheck, all tests)
test:
	scripts/test.sh

## e2e: only the end-to-end tests against the real binary
e2e:
	$(GO) test -count=1 -timeout 10m -v ./e2e/

## deps: install the Debian packages and tools the tests need
deps:
	scripts/install-deps.sh

## run: the PBX on this machine, data in $(DATA)
run:
	$(GO) run ./firmware/twinpbx run --data $(DATA)

clean:
	rm -rf $(OUT)

## bench: twinpbx against kamailio (REGISTER with auth, short calls), report in bench/results.md
.PHONY: bench
bench:
	bench/run.sh

## demo-failover: (root) run a twin pair in network namespaces, SIGKILL the active, show what a phone saw
.PHONY: demo-failover
demo-failover:
	$(GO) test -count=1 -v -run 'TestDecisionTable/active_SIGKILL' ./firmware/twin/nstest/

## image: the firmware image (kernel + u-root initramfs) into $(IMAGE)/, reproducibly
# KVER pins the Debian kernel ABI (image/build.KernelRelease); ACCEL is
# tcg because KVM does not work on the CI machines (try ACCEL=kvm).
IMAGE ?= $(OUT)/image
KVER ?= 6.1.0-56-amd64
ACCEL ?= tcg
MEM ?= 512
APPEND ?= console=ttyS0,115200 panic=-1 twinpbx.ip=10.0.2.15/24 twinpbx.gw=10.0.2.2
# UPDATE_KEY signs the update bundle (made on first use: keep it, boxes
# accept only bundles signed with the key their image was built with).
UPDATE_KEY ?= $(OUT)/keys/update.key
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
# STAGE_CMDLINE is the boot stage's kernel command line, baked into the
# unified kernel image on the disk's EFI system partition (a real board
# sets its twinpbx.board and its disk driver's module here). ext4 asks
# for crc32c through a modprobe the image does not have: load it first.
STAGE_CMDLINE ?= $(APPEND) twinpbx.modules=virtio_blk,crc32c_generic,ext4
# SB_KEY and SB_CERT (PEM), when set, sign the boot stage and the bundle's
# kernel for UEFI Secure Boot with osslsigncode (docs/IMAGE.md "Secure
# Boot"); unset, the stage is unsigned. Boxes flashed signed need signed
# bundles. The signatures carry the kernel package's date, or
# SOURCE_DATE_EPOCH when it is set in the environment: the same inputs
# give the same signed bytes.
SB_KEY ?=
SB_CERT ?=
.PHONY: image bundle qemu qemu-disk qemu-uefi
image:
	$(GO) run ./image/cmd/mkimage -out $(IMAGE) -kver $(KVER) -key $(UPDATE_KEY) -version $(VERSION) -stage-cmdline "$(STAGE_CMDLINE)" -sb-key "$(SB_KEY)" -sb-cert "$(SB_CERT)"

## bundle: only the signed update bundle ($(IMAGE)/twinpbx.bundle), for `twinpbx update`
bundle:
	$(GO) run ./image/cmd/mkimage -out $(IMAGE) -kver $(KVER) -key $(UPDATE_KEY) -version $(VERSION) -bundle-only -sb-key "$(SB_KEY)" -sb-cert "$(SB_CERT)"

## qemu: boot the image under QEMU, console here (Ctrl-A X quits); SIP on 127.0.0.1:15060/udp
# The initramfs uncompressed, TCG's max CPU (RDRAND) and no crypto
# self-tests boot about 3 s sooner under TCG (docs/IMAGE.md "Boot time").
qemu: $(IMAGE)/initramfs.cpio
	nice -n 19 qemu-system-x86_64 -accel $(ACCEL) -cpu max -machine q35 -m $(MEM) -nographic -serial mon:stdio \
		-device i6300esb -action watchdog=reset \
		-netdev user,id=lan,hostfwd=udp:127.0.0.1:15060-:5060 -device virtio-net-pci,netdev=lan \
		-kernel $(IMAGE)/vmlinux -initrd $(IMAGE)/initramfs.cpio -append "$(APPEND) cryptomgr.notests"

$(IMAGE)/initramfs.cpio: $(IMAGE)/initramfs.cpio.xz
	xz -dc $< > $@.tmp && mv $@.tmp $@

## qemu-twin: (root) a twin pair in two VMs: the crossover a QEMU dgram link, the LAN a bridge in a network namespace with the gateway and room for phones, the relay board and the PSTN line (ISDN exchange) on their serial ports; both consoles here, c + Enter places a call from the line, Ctrl-C ends it
.PHONY: qemu-twin
qemu-twin:
	$(GO) run ./image/cmd/qemutwin -image $(IMAGE) -accel $(ACCEL) -mem $(MEM)

## qemu-disk: boot a copy of the disk image ($(IMAGE)/disk.img → $(OUT)/qemu-disk.img) through the A/B boot stage
qemu-disk:
	cp --sparse=always $(IMAGE)/disk.img $(OUT)/qemu-disk.img
	nice -n 19 qemu-system-x86_64 -accel $(ACCEL) -machine q35 -m $(MEM) -nographic -serial mon:stdio \
		-device i6300esb -action watchdog=reset \
		-netdev user,id=lan,hostfwd=udp:127.0.0.1:15060-:5060 -device virtio-net-pci,netdev=lan \
		-drive file=$(OUT)/qemu-disk.img,if=virtio,format=raw \
		-kernel $(IMAGE)/vmlinux -initrd $(IMAGE)/initramfs.cpio.xz -append "$(APPEND) twinpbx.modules=virtio_blk,crc32c_generic,ext4"

## qemu-uefi: boot a copy of the disk image as a real box does: UEFI firmware (OVMF) → the stage on the EFI system partition → a slot
qemu-uefi:
	cp --sparse=always $(IMAGE)/disk.img $(OUT)/qemu-disk.img
	nice -n 19 qemu-system-x86_64 -accel $(ACCEL) -machine q35 -m $(MEM) -nographic -serial mon:stdio \
		-bios /usr/share/ovmf/OVMF.fd -device i6300esb -action watchdog=reset \
		-netdev user,id=lan,hostfwd=udp:127.0.0.1:15060-:5060 -device virtio-net-pci,netdev=lan \
		-drive file=$(OUT)/qemu-disk.img,if=virtio,format=raw

## qemu-uefi-sb: as qemu-uefi, with Secure Boot enforcing (Debian's OVMF with its snakeoil test key enrolled in db): build with that key first (docs/IMAGE.md "Secure Boot")
OVMF_SB_CODE ?= /usr/share/OVMF/OVMF_CODE_4M.snakeoil.fd
OVMF_SB_VARS ?= /usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd
.PHONY: qemu-uefi-sb
qemu-uefi-sb:
	cp --sparse=always $(IMAGE)/disk.img $(OUT)/qemu-disk.img
	cp $(OVMF_SB_VARS) $(OUT)/qemu-ovmf-vars.fd
	nice -n 19 qemu-system-x86_64 -accel $(ACCEL) -machine q35,smm=on -m $(MEM) -nographic -serial mon:stdio \
		-global driver=cfi.pflash01,property=secure,value=on \
		-drive if=pflash,format=raw,unit=0,readonly=on,file=$(OVMF_SB_CODE) \
		-drive if=pflash,format=raw,unit=1,file=$(OUT)/qemu-ovmf-vars.fd \
		-device i6300esb -action watchdog=reset \
		-netdev user,id=lan,hostfwd=udp:127.0.0.1:15060-:5060 -device virtio-net-pci,netdev=lan \
		-drive file=$(OUT)/qemu-disk.img,if=virtio,format=raw
