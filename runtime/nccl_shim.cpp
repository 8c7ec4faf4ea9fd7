// ncclCommInitRank takes its ncclUniqueId (128 bytes) by value, which bun:ffi cannot pass: this
// one function makes that call for runtime/nccl.ts, in the libnccl that runtime/nccl.ts has loaded
// (RTLD_NOLOAD: the same library, never another one). No NCCL header is needed: the id is 128
// opaque bytes (NCCL_UNIQUE_ID_BYTES), ncclComm_t a pointer and ncclResult_t an int, as nccl.h has
// declared them since NCCL 2.0.
#include <dlfcn.h>
#include <stdint.h>
#include <string.h>

typedef struct {
  char internal[128];
} ncclUniqueId;
typedef int (*CommInitRank)(void** comm, int nranks, ncclUniqueId id, int rank);

/** ncclCommInitRank of the loaded `library` (as it was opened); -1 when it is not loaded or lacks the symbol. */
extern "C" int32_t ngp_nccl_comm_init_rank(const char* library, void** comm, int32_t nranks, const uint8_t* id, int32_t rank) {
  void* handle = dlopen(library, RTLD_NOW | RTLD_NOLOAD);
  if (!handle) return -1;
  CommInitRank init = (CommInitRank)dlsym(handle, "ncclCommInitRank");
  dlclose(handle);  // (only the reference taken here: the library stays loaded)
  if (!init) return -1;
  ncclUniqueId copy;
  memcpy(copy.internal, id, sizeof copy.internal);
  return init(comm, nranks, copy, rank);
}
