// ncclCommInitRank takes its ncclUniqueId (128 bytes) by value, which bun:ffi cannot pass: this
// one function makes that call for runtime/nccl.ts, which loads libnccl itself and hands over the
// function's address. No NCCL header is needed: the id is 128 opaque bytes (NCCL_UNIQUE_ID_BYTES),
// ncclComm_t a pointer and ncclResult_t an int, as nccl.h has declared them since NCCL 2.0.
#include <stdint.h>
#include <string.h>

typedef struct {
  char internal[128];
} ncclUniqueId;
typedef int (*CommInitRank)(void** comm, int nranks, ncclUniqueId id, int rank);

extern "C" int32_t ngp_nccl_comm_init_rank(void* fn, void** comm, int32_t nranks, const uint8_t* id, int32_t rank) {
  ncclUniqueId copy;
  memcpy(copy.internal, id, sizeof copy.internal);
  return ((CommInitRank)fn)(comm, nranks, copy, rank);
}
