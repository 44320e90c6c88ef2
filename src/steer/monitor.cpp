// Online monitor and guard (include/phasemap/steer/monitor.hpp).
#include "phasemap/steer/monitor.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "phasemap/metrics/quantile.hpp"
#include "phasemap/metrics/token_axis.hpp"

namespace phasemap::steer {

const char* trigger_name(TriggerKind k) {
    switch (k) {
        case TriggerKind::collapse: return "collapse";
        case TriggerKind::spike: return "spike";
        case TriggerKind::streak: return "streak";
    }
    return "?";
}

const char* action_name(ActionKind a) {
    switch (a) {
        case ActionKind::log: return "log";
        case ActionKind::stop: return "stop";
        case ActionKind::guard: return "guard";
        case ActionKind::intervene: return "intervene";
    }
    return "?";
}

TriggerSpec parse_trigger(const std::string& spec) {
    TriggerSpec t;
    std::vector<std::string> f;
    size_t p = 0;
    for (;;) {
        const size_t q = spec.find(':', p);
        f.push_back(spec.substr(p, q == std::string::npos ? std::string::npos : q - p));
        if (q == std::string::npos) break;
        p = q + 1;
    }
    const std::string what = fmt::format("trigger '{}'", spec);
    if (f[0] == "collapse") t.kind = TriggerKind::collapse;
    else if (f[0] == "spike") t.kind = TriggerKind::spike;
    else if (f[0] == "streak") t.kind = TriggerKind::streak;
    else throw std::invalid_argument(fmt::format("{}: unknown trigger '{}' (collapse, spike, streak)", what, f[0]));
    for (size_t i = 1; i < f.size(); ++i) {
        const size_t eq = f[i].find('=');
        if (eq == std::string::npos) throw std::invalid_argument(fmt::format("{}: expected key=value, got '{}'", what, f[i]));
        const std::string key = f[i].substr(0, eq), val = f[i].substr(eq + 1);
        double v = 0;
        try {
            size_t used = 0;
            v = std::stod(val, &used);
            if (used != val.size() || !std::isfinite(v)) throw std::invalid_argument("");
        } catch (...) {
            throw std::invalid_argument(fmt::format("{}: '{}' is not a number", what, val));
        }
        auto count = [&](size_t lo) {
            if (v < double(lo) || v != std::floor(v)) throw std::invalid_argument(fmt::format("{}: {} must be an integer ≥ {}", what, key, lo));
            return size_t(v);
        };
        if (t.kind == TriggerKind::collapse && key == "window") t.window = count(1);
        else if (t.kind == TriggerKind::collapse && key == "period") t.max_period = count(1);
        else if (t.kind == TriggerKind::collapse && key == "threshold") {
            if (v <= 0) throw std::invalid_argument(what + ": threshold must be > 0");
            t.threshold = v;
        } else if (t.kind == TriggerKind::spike && key == "k") {
            if (v <= 0) throw std::invalid_argument(what + ": k must be > 0");
            t.k = v;
        } else if (t.kind == TriggerKind::spike && key == "min") t.min_history = count(3);
        else if (t.kind == TriggerKind::streak && key == "n") t.n = count(1);
        else throw std::invalid_argument(fmt::format("{}: unknown option '{}' for {}", what, key, f[0]));
    }
    return t;
}

void MonitorOptions::validate() const {
    if (action == ActionKind::guard && guard_text.empty()) throw std::invalid_argument("guard action needs a non-empty guard text");
    if (action == ActionKind::intervene && for_tokens < 1) throw std::invalid_argument("intervene action needs --for ≥ 1 tokens");
    if (cooldown < 1) throw std::invalid_argument("monitor cooldown must be ≥ 1");
    states.validate();
}

Monitor::Monitor(MonitorOptions opt, size_t n_layers_captured, size_t d) : opt_(std::move(opt)), Lp_(n_layers_captured), d_(d) {
    if (opt_.triggers.empty())
        opt_.triggers = {TriggerSpec{TriggerKind::collapse}, TriggerSpec{TriggerKind::spike}, TriggerSpec{TriggerKind::streak}};
    opt_.validate();
    if (opt_.layer != SIZE_MAX && opt_.layer >= Lp_)
        throw std::invalid_argument(fmt::format("monitor layer {} is not captured ({} layers)", opt_.layer, Lp_));
    layer_ = opt_.layer == SIZE_MAX ? (Lp_ ? Lp_ - 1 : 0) : opt_.layer;
    last_fired_.assign(opt_.triggers.size(), -1);
    for (const auto& tr : opt_.triggers)
        if (tr.kind == TriggerKind::collapse) max_period_ = std::max(max_period_, tr.max_period);
}

capture::StepAction Monitor::after_token(const capture::TokenRecord& rec, std::span<const float> states) {
    capture::StepAction act;
    const int t = rec.t;
    // ct_t (lag 1) and ct*_t (min over lags) from the kept states, with the §2 kernel.
    double ct_now = metrics::kNaN, ct_star_now = metrics::kNaN;
    if (Lp_ > 0 && states.size() == Lp_ * d_) {
        const float* h = states.data() + layer_ * d_;
        const size_t keep = 2 * max_period_ + 1;
        if (n_states_ == keep) hist_.erase(hist_.begin(), hist_.begin() + std::ptrdiff_t(d_));
        else ++n_states_;
        hist_.insert(hist_.end(), h, h + d_);
        std::vector<float> three(3 * d_);
        for (size_t p = 1; 2 * p + 1 <= n_states_ && p <= max_period_; ++p) {
            for (size_t r = 0; r < 3; ++r) {
                const float* src = hist_.data() + (n_states_ - 1 - (2 - r) * p) * d_;
                std::copy(src, src + d_, three.begin() + std::ptrdiff_t(r * d_));
            }
            const double c = metrics::token_series(metrics::RowsView<float>(three.data(), 3, d_)).ct.at(0);
            if (p == 1) ct_now = c;
            if (!(ct_star_now <= c)) ct_star_now = c;
        }
        if (n_states_ >= 3) {
            ct_.push_back(ct_now);
            ct_star_.push_back(ct_star_now);
        }
    }
    const metrics::OutputState os = metrics::classify_output_state(rec.stats, opt_.states);
    out_states_.push_back(os);
    streak_ = os == metrics::OutputState::COLLAPSE ? streak_ + 1 : 0;

    for (size_t i = 0; i < opt_.triggers.size(); ++i) {
        const TriggerSpec& tr = opt_.triggers[i];
        if (last_fired_[i] >= 0 && t - last_fired_[i] < long(opt_.cooldown)) continue;
        bool fire = false;
        double value = 0;
        std::string detail;
        switch (tr.kind) {
            case TriggerKind::collapse:
                if (std::isfinite(ct_star_now) && ct_star_.size() >= tr.window && n_states_ >= 2 * tr.max_period + 1) {
                    // ct* restricted to this trigger's periods
                    double s = 0;
                    for (size_t j = ct_star_.size() - tr.window; j < ct_star_.size(); ++j) s += ct_star_[j];
                    if (tr.max_period == 1) {
                        s = 0;
                        for (size_t j = ct_.size() - tr.window; j < ct_.size(); ++j) s += ct_[j];
                    }
                    value = s / double(tr.window);
                    fire = value < tr.threshold;
                    detail = fmt::format("late-window ct* {:.3g} < {:.3g} (last {} tokens, periods ≤ {})", value, tr.threshold, tr.window,
                                         tr.max_period);
                }
                break;
            case TriggerKind::spike:
                if (std::isfinite(ct_now) && ct_.size() > tr.min_history) {
                    std::vector<double> hist(ct_.begin(), ct_.end() - 1);
                    const double med = metrics::median_inplace(hist);
                    for (auto& x : hist) x = std::abs(x - med);
                    const double mad = metrics::median_inplace(hist);
                    const double bound = med + tr.k * 1.4826 * mad;
                    value = ct_now;
                    fire = ct_now > bound && ct_now > med;
                    detail = fmt::format("ct {:.3g} > median {:.3g} + {}·MAD {:.3g}", ct_now, med, tr.k, 1.4826 * mad);
                }
                break;
            case TriggerKind::streak:
                value = double(streak_);
                fire = streak_ >= tr.n;
                detail = fmt::format("{} COLLAPSE tokens in a row", streak_);
                break;
        }
        if (!fire) continue;
        last_fired_[i] = t;
        MonitorEvent ev{t, trigger_name(tr.kind), action_name(opt_.action), value, detail};
        const bool acting = opt_.action != ActionKind::log && actions_taken_ < opt_.max_actions && !act.stop &&
                            act.insert_text.empty() && act.add_interventions.empty();
        if (opt_.action != ActionKind::log && !acting) ev.action = "log";
        if (acting) {
            ++actions_taken_;
            switch (opt_.action) {
                case ActionKind::stop: act.stop = true; act.stop_reason = fmt::format("monitor:{}", ev.trigger); break;
                case ActionKind::guard: act.insert_text = opt_.guard_text; break;
                case ActionKind::intervene: {
                    capture::Intervention iv = opt_.intervention;
                    iv.t_begin = t + 1;
                    iv.t_end = t + 1 + opt_.for_tokens;
                    act.add_interventions.push_back(std::move(iv));
                    break;
                }
                case ActionKind::log: break;
            }
        }
        act.events.push_back(fmt::format("{} trigger: {} → {}", ev.trigger, ev.detail, ev.action));
        events_.push_back(std::move(ev));
    }
    return act;
}

}  // namespace phasemap::steer
