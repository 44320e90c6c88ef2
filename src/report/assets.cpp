// Embeds the report's JavaScript and HTML into the binary with the assembler's .incbin, so the
// page can be written without any file at run time. The paths come from cmake/report.cmake
// (PM_ASSET_* compile definitions); the object file depends on them (OBJECT_DEPENDS).
#include "assets.hpp"

#define PM_STR2(x) #x
#define PM_STR(x) PM_STR2(x)

#define PM_INCBIN(name, path)                                                   \
    __asm__(".section .rodata\n"                                                \
            ".balign 16\n"                                                      \
            ".global pm_asset_" #name "_begin\n"                                \
            "pm_asset_" #name "_begin:\n"                                       \
            ".incbin \"" path "\"\n"                                            \
            ".global pm_asset_" #name "_end\n"                                  \
            "pm_asset_" #name "_end:\n"                                         \
            ".byte 0\n"                                                         \
            ".previous\n");                                                     \
    extern "C" const char pm_asset_##name##_begin[];                            \
    extern "C" const char pm_asset_##name##_end[];

PM_INCBIN(vega, PM_ASSET_VEGA)
PM_INCBIN(vega_lite, PM_ASSET_VEGA_LITE)
PM_INCBIN(vega_embed, PM_ASSET_VEGA_EMBED)
PM_INCBIN(template_html, PM_ASSET_TEMPLATE)
PM_INCBIN(report_js, PM_ASSET_REPORT_JS)
PM_INCBIN(export_js, PM_ASSET_EXPORT_JS)

namespace phasemap::report::assets {

#define PM_VIEW(name) \
    std::string_view name() { return {pm_asset_##name##_begin, static_cast<size_t>(pm_asset_##name##_end - pm_asset_##name##_begin)}; }
PM_VIEW(vega)
PM_VIEW(vega_lite)
PM_VIEW(vega_embed)
PM_VIEW(template_html)
PM_VIEW(report_js)
PM_VIEW(export_js)


}  // namespace phasemap::report::assets
