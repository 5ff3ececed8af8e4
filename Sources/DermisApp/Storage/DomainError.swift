/// What a store or service refuses, in the domain's words: the thing is not there (for this clinic), or it changed
/// since it was read. A refusal that names a field is `InvalidInput`. The web layer turns each into its status in one
/// place (Web/RequestHelpers.swift): 404, 409, 422.
enum DomainError: Error, Sendable, Equatable {
    case notFound(String)
    case conflict(String)
}
