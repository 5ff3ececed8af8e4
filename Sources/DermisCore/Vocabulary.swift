/// The stable codes of the clinical data contract (docs/CONTRACT.md). Extend, never rename or remove.
public enum Vocabulary {
    public static let conditions = [
        "active-skin-cancer", "active-infection", "open-wound", "herpes-simplex", "keloid-history",
        "bleeding-disorder", "eczema", "psoriasis", "rosacea", "active-acne", "immunosuppression", "diabetes",
    ]
    public static let medications = ["isotretinoin", "anticoagulant", "topical-retinoid", "immunosuppressant"]
    public static let allergies = ["lidocaine", "topical-anaesthetic", "stainless-steel"]
    public static let procedures = ["dermal-filler", "botulinum-toxin", "radiation", "chemical-peel", "laser"]
    public static let zones = [
        "forehead", "periorbital", "nose", "cheeks", "perioral", "chin", "jawline", "neck",
        "decolletage", "hands", "scalp", "abdomen", "thighs", "arms",
    ]
    public static let indications = [
        "fine-lines", "wrinkles", "acne-scars", "surgical-scars", "texture", "enlarged-pores",
        "hyperpigmentation", "melasma", "stretch-marks", "hair-loss",
    ]
    public static let fitzpatrickTypes = 1...6
}

/// Skin thickness as the depth chart distinguishes it.
public enum SkinThickness: String, Codable, Sendable, CaseIterable {
    case thin, thick
}
