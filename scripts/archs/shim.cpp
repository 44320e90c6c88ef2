// The three llama.cpp "common" functions that tests/test-llama-archs.cpp calls beyond log.cpp,
// written here so that the generator links against the cached libllama without building the
// whole common library (chat, arg parsing, downloads, ...). Built by scripts/archs.sh only.
#include "common.h"
#include "log.h"

void common_init() { llama_log_set(common_log_default_callback, nullptr); }

bool tty_can_use_colors() { return false; }

void common_batch_add(llama_batch & batch, llama_token id, llama_pos pos, const std::vector<llama_seq_id> & seq_ids,
                      bool logits) {
    const int i = batch.n_tokens;
    batch.token[i]    = id;
    batch.pos[i]      = pos;
    batch.n_seq_id[i] = (int32_t) seq_ids.size();
    for (size_t k = 0; k < seq_ids.size(); ++k) {
        batch.seq_id[i][k] = seq_ids[k];
    }
    batch.logits[i] = logits;
    batch.n_tokens++;
}
